package webpush

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func testVAPID(t *testing.T) *VAPID {
	t.Helper()
	der, err := NewVAPIDKey()
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParseVAPID(der, "mailto:ops@example.com")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAuthorization checks the header as RFC 8292 section 3 reads: the
// JWT verifies with k, its aud is the endpoint's origin and exp within 24 h.
func TestAuthorization(t *testing.T) {
	v := testVAPID(t)
	now := time.Unix(1_800_000_000, 0)
	h, err := v.Authorization("https://push.example.net:8443/send/abc?x=1", now)
	if err != nil {
		t.Fatal(err)
	}
	rest, ok := strings.CutPrefix(h, "vapid t=")
	jwt, k, ok2 := strings.Cut(rest, ", k=")
	if !ok || !ok2 || k != v.PublicKey() {
		t.Fatalf("header %q", h)
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("jwt %q", jwt)
	}
	dec := base64.RawURLEncoding
	var head struct{ Typ, Alg string }
	var claims struct {
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
		Sub string `json:"sub"`
	}
	hb, _ := dec.DecodeString(parts[0])
	cb, _ := dec.DecodeString(parts[1])
	if json.Unmarshal(hb, &head) != nil || json.Unmarshal(cb, &claims) != nil {
		t.Fatalf("jwt parts %s %s", hb, cb)
	}
	if head.Alg != "ES256" || claims.Aud != "https://push.example.net:8443" || claims.Sub != "mailto:ops@example.com" ||
		claims.Exp <= now.Unix() || claims.Exp > now.Add(MaxTokenLife).Unix() {
		t.Errorf("head %+v claims %+v", head, claims)
	}
	// The signature, with the public key from k alone.
	point, _ := dec.DecodeString(k)
	pub, err := ecdh.P256().NewPublicKey(point)
	if err != nil {
		t.Fatal(err)
	}
	x, y := new(big.Int).SetBytes(point[1:33]), new(big.Int).SetBytes(point[33:])
	_ = pub
	sig, _ := dec.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	ek := &ecdsa.PublicKey{Curve: v.key.Curve, X: x, Y: y}
	if len(sig) != 64 || !ecdsa.Verify(ek, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Error("signature does not verify with k")
	}
	// Reused within the hour for the same origin, signed anew after it or
	// for another origin.
	if again, _ := v.Authorization("https://push.example.net:8443/other", now.Add(59*time.Minute)); again != h {
		t.Error("a token for the same origin was signed anew within the hour")
	}
	if later, _ := v.Authorization("https://push.example.net:8443/x", now.Add(61*time.Minute)); later == h {
		t.Error("a token was reused after the hour")
	}
	if other, _ := v.Authorization("https://push.other.example/x", now); other == h {
		t.Error("a token was reused for another origin")
	}
	if _, err := ParseVAPID([]byte("nope"), ""); err == nil {
		t.Error("a bad key parsed")
	}
	// No subject: no sub claim.
	der, _ := NewVAPIDKey()
	anon, err := ParseVAPID(der, "")
	if err != nil {
		t.Fatal(err)
	}
	h, _ = anon.Authorization("https://push.example.net/x", now)
	cb, _ = dec.DecodeString(strings.Split(strings.TrimPrefix(h, "vapid t="), ".")[1])
	if strings.Contains(string(cb), "sub") {
		t.Errorf("claims without a subject: %s", cb)
	}
	if _, err := ParseVAPID(der, "ops@example.com"); err == nil {
		t.Error("a subject without scheme taken")
	}
	for _, s := range []string{"mailto:ops@example.com", "https://example.com/contact"} {
		if CheckSubject(s) != nil {
			t.Errorf("subject %q refused", s)
		}
	}
	for _, s := range []string{"ops@example.com", "http://example.com", "mailto:", "https://"} {
		if CheckSubject(s) == nil {
			t.Errorf("subject %q taken", s)
		}
	}
}

func TestCheckEndpoint(t *testing.T) {
	tests := []struct {
		name      string
		endpoint  string
		allowHTTP bool
		err       error
	}{
		{"OK", "https://fcm.googleapis.com/fcm/send/abc", false, nil},
		{"OKHTTPAllowed", "http://127.0.0.1:9000/push/1", true, nil},
		{"ErrNotHTTPS", "http://push.example.net/x", false, ErrNotHTTPS},
		{"ErrScheme", "ftp://push.example.net/x", true, ErrNotHTTPS},
		{"ErrLoopback", "https://127.0.0.1/x", false, ErrPrivate},
		{"ErrPrivate", "https://10.1.2.3/x", false, ErrPrivate},
		{"ErrLinkLocal", "https://[fe80::1]/x", false, ErrPrivate},
		{"ErrLocalhost", "https://localhost:8443/x", false, ErrPrivate},
		{"ErrRelative", "/push/1", true, ErrBadEndpoint},
		{"ErrUserinfo", "https://a:b@push.example.net/x", false, ErrBadEndpoint},
		{"ErrLong", "https://push.example.net/" + strings.Repeat("a", 2048), false, ErrBadEndpoint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckEndpoint(tt.endpoint, tt.allowHTTP); !errors.Is(err, tt.err) {
				t.Errorf("err = %v, want %v", err, tt.err)
			}
		})
	}
}

func testSubscription(t *testing.T) (p256dh, auth []byte) {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth = make([]byte, 16)
	rand.Read(auth)
	return k.PublicKey().Bytes(), auth
}

// TestSend: the push service's answers, as Send reports them.
func TestSend(t *testing.T) {
	var answer atomic.Value // func(w)
	var got atomic.Pointer[http.Request]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r)
		answer.Load().(func(http.ResponseWriter))(w)
	}))
	defer srv.Close()
	p256dh, auth := testSubscription(t)
	now := time.Unix(1_800_000_000, 0)
	c := New(testVAPID(t), Options{AllowHTTP: true, Now: func() time.Time { return now }})
	msg := Message{Endpoint: srv.URL + "/push/1", P256dh: p256dh, Auth: auth, Payload: []byte(`{"v":1}`),
		TTL: 30 * time.Second, Urgency: UrgencyHigh, Topic: "abc"}
	tests := []struct {
		name   string
		status int
		header string
		gone   bool
		retry  time.Duration
		err    error
	}{
		{"Created", 201, "", false, 0, nil},
		{"ErrNotFound", 404, "", true, 0, ErrRejected},
		{"ErrGone", 410, "", true, 0, ErrRejected},
		{"ErrBadRequest", 400, "", false, 0, ErrRejected},
		{"ErrTooManyNoRetryAfter", 429, "", false, 0, ErrRejected},
		{"ErrTooMany", 429, "7", false, 7 * time.Second, ErrThrottled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer.Store(func(w http.ResponseWriter) {
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				w.WriteHeader(tt.status)
			})
			r, err := c.Send(context.Background(), msg)
			if !errors.Is(err, tt.err) || r.Gone != tt.gone || r.RetryAfter != tt.retry || r.Status != tt.status {
				t.Fatalf("result %+v err %v", r, err)
			}
			req := got.Load()
			if req.Header.Get("TTL") != "30" || req.Header.Get("Urgency") != "high" || req.Header.Get("Topic") != "abc" ||
				req.Header.Get("Content-Encoding") != "aes128gcm" || !strings.HasPrefix(req.Header.Get("Authorization"), "vapid t=") {
				t.Errorf("headers %v", req.Header)
			}
		})
	}
	// Within the Retry-After, nothing is sent to that origin.
	got.Store(nil)
	r, err := c.Send(context.Background(), msg)
	if !errors.Is(err, ErrThrottled) || got.Load() != nil || r.RetryAfter != 7*time.Second {
		t.Errorf("within Retry-After: %+v %v, request sent: %v", r, err, got.Load() != nil)
	}
	now = now.Add(8 * time.Second)
	answer.Store(func(w http.ResponseWriter) { w.WriteHeader(201) })
	if _, err := c.Send(context.Background(), msg); err != nil {
		t.Errorf("after Retry-After: %v", err)
	}
	msg.Topic = "not a topic!"
	if _, err := c.Send(context.Background(), msg); !errors.Is(err, ErrBadTopic) {
		t.Errorf("bad topic: %v", err)
	}
}

// TestSendPrivateRefused: without AllowHTTP, a private address is refused
// as it is connected to.
func TestSendPrivateRefused(t *testing.T) {
	var hit atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit.Store(true) }))
	defer srv.Close()
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	c := New(testVAPID(t), Options{})
	// The client's own transport refuses the address as it connects,
	// whatever name led there (Send refuses address literals before).
	res, err := c.client.Get(srv.URL)
	if err == nil {
		res.Body.Close()
	}
	if !errors.Is(err, ErrPrivate) || hit.Load() {
		t.Fatalf("connected to a private address: %v", err)
	}
	// The dialer's own check, whatever the name.
	if err := guard(false)("tcp", "127.0.0.1"+port, nil); !errors.Is(err, ErrPrivate) {
		t.Errorf("guard: %v", err)
	}
	if err := guard(false)("tcp", "93.184.215.14:443", nil); err != nil {
		t.Errorf("guard of a public address: %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 2 * time.Minute, true},
		{" 0 ", 0, true},
		{"99999999", time.Hour, true},
		{"Mon, 07 Dec 2026 10:00:30 GMT", 30 * time.Second, true},
		{"Mon, 07 Dec 2026 09:00:00 GMT", 0, true},
		{"", 0, false},
		{"-5", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseRetryAfter(%q) = %v %v, want %v %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "Mon, 07 Dec 2026 10:00:30 GMT", "", "-1", "1e9", "Monday, 07-Dec-26 10:00:30 GMT"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseRetryAfter(s, now)
		if d < 0 || d > maxRetryAfter || (!ok && d != 0) {
			t.Fatalf("ParseRetryAfter(%q) = %v %v", s, d, ok)
		}
	})
}

// brokenThrottle cannot be read or written, as with the database away.
type brokenThrottle struct{ holds atomic.Int32 }

func (b *brokenThrottle) PushesHeldUntil(context.Context, string) (time.Time, error) {
	return time.Time{}, errors.New("database away")
}

func (b *brokenThrottle) HoldPushes(context.Context, string, time.Time) error {
	b.holds.Add(1)
	return errors.New("database away")
}

// frozenThrottle answers nothing until its context ends, as a frozen
// database.
type frozenThrottle struct{}

func (frozenThrottle) PushesHeldUntil(ctx context.Context, _ string) (time.Time, error) {
	<-ctx.Done()
	return time.Time{}, ctx.Err()
}

func (frozenThrottle) HoldPushes(ctx context.Context, _ string, _ time.Time) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestSendThrottleFrozen: a Throttle that does not answer holds a push
// back at most throttleTimeout, then the push goes.
func TestSendThrottleFrozen(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) }))
	defer srv.Close()
	p256dh, auth := testSubscription(t)
	c := New(testVAPID(t), Options{AllowHTTP: true, Throttle: frozenThrottle{}})
	start := time.Now()
	_, err := c.Send(context.Background(), Message{Endpoint: srv.URL + "/push/1", P256dh: p256dh, Auth: auth, Payload: []byte(`{}`), TTL: time.Minute})
	if err != nil {
		t.Fatalf("with the throttle frozen: %v", err)
	}
	if took := time.Since(start); took < throttleTimeout || took > throttleTimeout+2*time.Second {
		t.Errorf("sent after %s, want after the throttle's %s", took, throttleTimeout)
	}
}

// TestSendThrottleUnreadable: a Throttle that cannot be read does not hold
// pushes back, and one that cannot be written leaves the wait kept in
// memory.
func TestSendThrottleUnreadable(t *testing.T) {
	var status atomic.Int32
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	p256dh, auth := testSubscription(t)
	th := &brokenThrottle{}
	c := New(testVAPID(t), Options{AllowHTTP: true, Throttle: th})
	msg := Message{Endpoint: srv.URL + "/push/1", P256dh: p256dh, Auth: auth, Payload: []byte(`{}`), TTL: time.Minute}
	status.Store(http.StatusCreated)
	if _, err := c.Send(context.Background(), msg); err != nil || hits.Load() != 1 {
		t.Fatalf("with the throttle unreadable: %v, %d requests", err, hits.Load())
	}
	status.Store(http.StatusTooManyRequests)
	if _, err := c.Send(context.Background(), msg); !errors.Is(err, ErrThrottled) || th.holds.Load() != 1 {
		t.Fatalf("429: %v, %d holds recorded", err, th.holds.Load())
	}
	if _, err := c.Send(context.Background(), msg); !errors.Is(err, ErrThrottled) || hits.Load() != 2 {
		t.Fatalf("within the wait, kept in memory: %v, %d requests", err, hits.Load())
	}
}
