// Package webpush sends Web Push messages: RFC 8030's protocol, the
// payload encrypted as RFC 8291 says (aes128gcm, RFC 8188), signed with
// VAPID (RFC 8292). It is an outbound HTTP adapter like webhook: it knows
// nothing of calls or of the store; cmd/callstate wires it.
package webpush

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// RecordSize is the record size every message is sent with (RFC 8188
// rs): one record holds the whole payload.
const RecordSize = 4096

// MaxPayload is the largest plaintext Encrypt takes: one record of
// RecordSize less the 16-byte tag and the padding delimiter. Push services
// must take at least 4096 octets of payload (RFC 8030 section 7.2); with
// the 86-byte header this keeps the body within 4096+86.
const MaxPayload = RecordSize - 16 - 1

// ErrTooLarge is returned for a payload over MaxPayload.
var ErrTooLarge = errors.New("webpush: payload over 4079 bytes")

// ErrBadKeys is returned for a subscription whose p256dh is not a P-256
// point or whose auth secret is not 16 bytes.
var ErrBadKeys = errors.New("webpush: bad subscription keys")

// Encrypt encrypts plaintext for a user agent whose subscription has the
// public key p256dh (65 bytes, uncompressed) and the authentication
// secret auth (16 bytes), with a fresh key pair and salt, as RFC 8291
// section 3 says. The result is the request body (Content-Encoding:
// aes128gcm).
func Encrypt(plaintext, p256dh, auth []byte) ([]byte, error) {
	as, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("webpush: key pair: %w", err)
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("webpush: salt: %w", err)
	}
	return encrypt(plaintext, p256dh, auth, as, salt)
}

// encrypt is Encrypt with the application server's key pair and the salt
// given (the RFC's test vector fixes both).
func encrypt(plaintext, p256dh, auth []byte, as *ecdh.PrivateKey, salt []byte) ([]byte, error) {
	if len(plaintext) > MaxPayload {
		return nil, ErrTooLarge
	}
	if len(auth) != 16 || len(salt) != 16 {
		return nil, ErrBadKeys
	}
	ua, err := ecdh.P256().NewPublicKey(p256dh)
	if err != nil {
		return nil, fmt.Errorf("%w: p256dh: %v", ErrBadKeys, err)
	}
	secret, err := as.ECDH(ua)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKeys, err)
	}
	asPublic := as.PublicKey().Bytes()
	// RFC 8291 section 3.4: key_info = "WebPush: info" || 0x00 ||
	// ua_public || as_public; IKM = HKDF(auth, ecdh_secret, key_info, 32).
	keyInfo := make([]byte, 0, 14+65+65)
	keyInfo = append(keyInfo, "WebPush: info\x00"...)
	keyInfo = append(keyInfo, p256dh...)
	keyInfo = append(keyInfo, asPublic...)
	ikm, err := hkdf.Key(sha256.New, secret, auth, string(keyInfo), 32)
	if err != nil {
		return nil, fmt.Errorf("webpush: ikm: %w", err)
	}
	// RFC 8188 section 2.2 and 2.3: the content-encryption key and nonce
	// from the salt and IKM.
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		return nil, fmt.Errorf("webpush: prk: %w", err)
	}
	cek, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, fmt.Errorf("webpush: cek: %w", err)
	}
	nonce, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, fmt.Errorf("webpush: nonce: %w", err)
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("webpush: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("webpush: %w", err)
	}
	// The header (RFC 8188 section 2.1): salt, rs, idlen, keyid (the
	// application server's public key, RFC 8291 section 4).
	out := make([]byte, 0, 16+4+1+len(asPublic)+len(plaintext)+1+gcm.Overhead())
	out = append(out, salt...)
	out = binary.BigEndian.AppendUint32(out, RecordSize)
	out = append(out, byte(len(asPublic)))
	out = append(out, asPublic...)
	// One record, the last: the plaintext and the delimiter 0x02, no
	// padding (RFC 8188 section 2).
	record := make([]byte, 0, len(plaintext)+1)
	record = append(record, plaintext...)
	record = append(record, 2)
	return gcm.Seal(out, nonce, record, nil), nil
}
