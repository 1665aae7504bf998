package webpush

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func b64(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		tb.Fatalf("decode %q: %v", s, err)
	}
	return b
}

// TestEncryptRFC8291 checks the worked example of RFC 8291 section 5 (and
// appendix A) byte for byte, and refuses what does not fit.
func TestEncryptRFC8291(t *testing.T) {
	asPrivate, err := ecdh.P256().NewPrivateKey(b64(t, "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"))
	if err != nil {
		t.Fatal(err)
	}
	uaPublic := b64(t, "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4")
	auth := b64(t, "BTBZMqHH6r4Tts7J_aSIgg")
	salt := b64(t, "DGv6ra1nlYgDCS1FRnbzlw")
	plaintext := b64(t, "V2hlbiBJIGdyb3cgdXAsIEkgd2FudCB0byBiZSBhIHdhdGVybWVsb24")
	const (
		header     = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
		ciphertext = "8pfeW0KbunFT06SuDKoJH9Ql87S1QUrdirN6GcG7sFz1y1sqLgVi1VhjVkHsUoEsbI_0LpXMuGvnzQ"
	)
	if got := base64.RawURLEncoding.EncodeToString(asPrivate.PublicKey().Bytes()); got != "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8" {
		t.Fatalf("as public key %s", got)
	}
	tests := []struct {
		name      string
		plaintext []byte
		p256dh    []byte
		auth      []byte
		want      string // base64url of the body
		err       error
	}{
		{"OK", plaintext, uaPublic, auth, header + ciphertext, nil},
		{"ErrTooLarge", []byte(strings.Repeat("a", MaxPayload+1)), uaPublic, auth, "", ErrTooLarge},
		{"ErrBadKeysAuth", plaintext, uaPublic, auth[:15], "", ErrBadKeys},
		{"ErrBadKeysPoint", plaintext, append([]byte{4}, make([]byte, 64)...), auth, "", ErrBadKeys},
		{"ErrBadKeysCompressed", plaintext, uaPublic[:33], auth, "", ErrBadKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := encrypt(tt.plaintext, tt.p256dh, tt.auth, asPrivate, salt)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if tt.err != nil {
				return
			}
			// The header and the ciphertext, each as the RFC prints it.
			if got := base64.RawURLEncoding.EncodeToString(body[:86]); got != header {
				t.Errorf("header\n got %s\nwant %s", got, header)
			}
			if got := base64.RawURLEncoding.EncodeToString(body[86:]); got != ciphertext {
				t.Errorf("ciphertext\n got %s\nwant %s", got, ciphertext)
			}
		})
	}
}

// TestEncryptMaxPayload: the largest payload fits one record, and two
// messages of the same payload differ (fresh key and salt).
func TestEncryptMaxPayload(t *testing.T) {
	ua, _ := ecdh.P256().GenerateKey(rand.Reader)
	auth := make([]byte, 16)
	a, err := Encrypt([]byte(strings.Repeat("x", MaxPayload)), ua.PublicKey().Bytes(), auth)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 86+RecordSize {
		t.Errorf("body of %d bytes, want %d", len(a), 86+RecordSize)
	}
	b, _ := Encrypt([]byte(strings.Repeat("x", MaxPayload)), ua.PublicKey().Bytes(), auth)
	if string(a[:16]) == string(b[:16]) || string(a[86:]) == string(b[86:]) {
		t.Error("two messages share a salt or ciphertext")
	}
}
