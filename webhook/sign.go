// Package webhook sends the feed's events out to HTTP endpoints, following
// the Standard Webhooks specification (https://www.standardwebhooks.com):
// each message has one id whatever the tries, is signed with HMAC-SHA256
// over "id.timestamp.body" with the endpoint's whsec_ secret, and is tried
// again on a schedule until a 2xx answer. Deliveries and their attempts
// are kept in PostgreSQL (see Store), so any instance delivers and a crash
// only means delivering again.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every secret: whsec_ and the key in base64.
const SecretPrefix = "whsec_"

// ErrBadSecret is returned for a secret that is not whsec_ and 24 to 64
// bytes of base64.
var ErrBadSecret = errors.New("webhook secret must be whsec_ followed by 24 to 64 bytes in base64")

// ParseSecret returns the key of a whsec_ secret, or an error wrapping
// ErrBadSecret. The error never contains the secret.
func ParseSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, ErrBadSecret
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) < 24 || len(key) > 64 {
		return nil, ErrBadSecret
	}
	return key, nil
}

// NewSecret returns a new random whsec_ secret of 32 bytes.
func NewSecret() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails (crypto/rand)
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// Sign returns the webhook-signature header's value for a message: "v1,"
// and the base64 HMAC-SHA256 of "id.timestamp.body" with each key, joined
// by spaces (several keys while a secret is rotated).
func Sign(keys [][]byte, id string, ts time.Time, body []byte) string {
	var sigs []string
	for _, key := range keys {
		m := hmac.New(sha256.New, key)
		fmt.Fprintf(m, "%s.%d.", id, ts.Unix())
		m.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}

// Headers returns the three headers of a signed message.
func Headers(keys [][]byte, id string, ts time.Time, body []byte) map[string]string {
	return map[string]string{
		"webhook-id":        id,
		"webhook-timestamp": strconv.FormatInt(ts.Unix(), 10),
		"webhook-signature": Sign(keys, id, ts, body),
	}
}

// ErrBadSignature is returned by Verify when no signature matches. It says
// nothing of what was expected.
var ErrBadSignature = errors.New("webhook signature does not match")

// Verify checks a message's signature header with key, as a receiver does
// (tests use it; the receivers in the integration tests use an independent
// implementation). It returns ErrBadSignature when none of the header's
// v1 signatures matches.
func Verify(key []byte, id, timestamp, signature string, body []byte) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrBadSignature
	}
	want := Sign([][]byte{key}, id, time.Unix(sec, 0), body)
	for _, s := range strings.Fields(signature) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrBadSignature
}
