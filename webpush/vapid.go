package webpush

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
)

// VAPID is an application server's identity (RFC 8292): a P-256 key pair
// and a contact. Every instance must sign with the same key, since
// browsers bind a subscription to the public key it was made with.
type VAPID struct {
	key     *ecdsa.PrivateKey
	public  []byte // uncompressed point, 65 bytes
	k       string // public, base64url: the k= parameter and applicationServerKey
	subject string

	mu    sync.Mutex
	cache map[string]token // by audience: a token is reused while it has long to live
}

// token is a signed Authorization header and when it stops being reused.
type token struct {
	header string
	renew  time.Time
}

// NewVAPIDKey returns a new private key in PKCS #8 DER, to be kept (the
// store keeps it).
func NewVAPIDKey() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("webpush: vapid key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("webpush: vapid key: %w", err)
	}
	return der, nil
}

// ParseVAPID returns the identity of a private key made by NewVAPIDKey,
// with subject (a mailto: or https: URI, RFC 8292 section 2.1) as contact;
// an empty subject sends none (RFC 8292 says SHOULD, not MUST).
func ParseVAPID(pkcs8 []byte, subject string) (*VAPID, error) {
	k, err := x509.ParsePKCS8PrivateKey(pkcs8)
	if err != nil {
		return nil, fmt.Errorf("webpush: vapid key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, errors.New("webpush: vapid key: not a P-256 key")
	}
	if subject != "" {
		if err := CheckSubject(subject); err != nil {
			return nil, err
		}
	}
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		return nil, fmt.Errorf("webpush: vapid key: %w", err)
	}
	b := pub.Bytes()
	return &VAPID{key: key, public: b, k: base64.RawURLEncoding.EncodeToString(b), subject: subject,
		cache: map[string]token{}}, nil
}

// CheckSubject reports whether s is a VAPID contact: a mailto: or an
// https: URI (RFC 8292 section 2.1).
func CheckSubject(s string) error {
	u, err := url.Parse(s)
	if err != nil || !(u.Scheme == "mailto" && u.Opaque != "" || u.Scheme == "https" && u.Host != "") {
		return fmt.Errorf("webpush: vapid subject %q: want a mailto: or https: URI", s)
	}
	return nil
}

// PublicKey is the public key in base64url (uncompressed point): what a
// browser's pushManager.subscribe takes as applicationServerKey.
func (v *VAPID) PublicKey() string { return v.k }

// MaxTokenLife bounds a token's exp: RFC 8292 section 2 allows at most 24
// hours from the request.
const MaxTokenLife = 24 * time.Hour

// tokenLife is the exp a token gets; it is reused for tokenReuse, so that
// a push service never sees one with less than 11 hours to live, and a
// push costs no signature.
const (
	tokenLife  = 12 * time.Hour
	tokenReuse = time.Hour
)

// Authorization returns the Authorization header for a request to
// endpoint at now (RFC 8292 section 3): "vapid t=<JWT>, k=<public key>",
// the JWT's aud the endpoint's origin. A token is signed once an hour per
// origin and reused meanwhile.
func (v *VAPID) Authorization(endpoint string, now time.Time) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("webpush: endpoint %q is no absolute URL", endpoint)
	}
	aud := u.Scheme + "://" + u.Host
	v.mu.Lock()
	t, ok := v.cache[aud]
	v.mu.Unlock()
	if ok && now.Before(t.renew) && !now.Before(t.renew.Add(-tokenReuse)) {
		return t.header, nil
	}
	h, err := v.sign(aud, now)
	if err != nil {
		return "", err
	}
	v.mu.Lock()
	if len(v.cache) > 1000 { // push services are few; made-up endpoints must not grow it
		clear(v.cache)
	}
	v.cache[aud] = token{header: h, renew: now.Add(tokenReuse)}
	v.mu.Unlock()
	return h, nil
}

// sign makes the header for aud.
func (v *VAPID) sign(aud string, now time.Time) (string, error) {
	claims, err := json.Marshal(struct {
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
		Sub string `json:"sub,omitempty"`
	}{aud, now.Add(tokenLife).Unix(), v.subject})
	if err != nil {
		return "", fmt.Errorf("webpush: claims: %w", err)
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"typ":"JWT","alg":"ES256"}`)) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, v.key, sum[:])
	if err != nil {
		return "", fmt.Errorf("webpush: sign: %w", err)
	}
	// JWS ES256: R and S, 32 bytes each (RFC 7518 section 3.4).
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	var b strings.Builder
	b.WriteString("vapid t=")
	b.WriteString(signing)
	b.WriteByte('.')
	b.WriteString(enc.EncodeToString(sig))
	b.WriteString(", k=")
	b.WriteString(v.k)
	return b.String(), nil
}
