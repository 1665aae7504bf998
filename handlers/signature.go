package handlers

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
)

// SipgatePublicKey is sipgate.io's public key for X-Sipgate-Signature, as
// sipgate publishes it: an RSA 4096 SPKI key in a PEM block labelled
// CERTIFICATE.
//
//go:embed sipgate-push-api.pem
var SipgatePublicKey []byte

// Errors returned by SignatureVerifier.Verify. They never include the
// signature received nor anything derived from the key.
var (
	ErrSignatureMissing = errors.New("missing X-Sipgate-Signature header")
	ErrSignatureInvalid = errors.New("X-Sipgate-Signature does not verify")
)

// SignatureVerifier checks sipgate.io's request signatures: RSA PKCS#1 v1.5
// with SHA-256 over the exact raw request body, base64 in the
// X-Sipgate-Signature header.
type SignatureVerifier struct {
	key *rsa.PublicKey
}

// NewSignatureVerifier returns a verifier for the RSA public key in pemData.
// It accepts a PKIX public key under any PEM label (sipgate's says
// CERTIFICATE), a PKCS#1 "RSA PUBLIC KEY", and a real X.509 certificate.
// It returns an error if pemData holds no RSA public key.
func NewSignatureVerifier(pemData []byte) (*SignatureVerifier, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, errors.New("signature key: no PEM block found")
	}
	var pub any
	var err error
	if pub, err = x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		if k, err1 := x509.ParsePKCS1PublicKey(block.Bytes); err1 == nil {
			pub, err = k, nil
		} else if cert, err2 := x509.ParseCertificate(block.Bytes); err2 == nil {
			pub, err = cert.PublicKey, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("signature key: PEM block %q holds no public key: %w", block.Type, err)
	}
	key, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("signature key: %T is not an RSA key", pub)
	}
	return &SignatureVerifier{key: key}, nil
}

// Verify checks header, the X-Sipgate-Signature value, against body.
// It returns ErrSignatureMissing for an empty header and ErrSignatureInvalid
// for anything that does not verify, with no detail that could help forge one.
func (v *SignatureVerifier) Verify(body []byte, header string) error {
	if header == "" {
		return ErrSignatureMissing
	}
	sig, err := base64.StdEncoding.DecodeString(header)
	if err != nil || len(sig) != v.key.Size() {
		return ErrSignatureInvalid
	}
	sum := sha256.Sum256(body)
	if rsa.VerifyPKCS1v15(v.key, crypto.SHA256, sum[:], sig) != nil {
		return ErrSignatureInvalid
	}
	return nil
}
