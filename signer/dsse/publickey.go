package dsse

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// KeyID returns hallmark's id of a public key: the lower-case hex SHA-256 of
// its DER-encoded PKIX SubjectPublicKeyInfo. It is the same fingerprint the
// DSSE libraries that cosign uses compute for a key without an explicit id, so
// an envelope's keyid never makes cosign skip our signature.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("dsse: key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// ParsePublicKeyPEM reads one PEM "PUBLIC KEY" block (PKIX) and returns the key.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("dsse: no PEM block in the public key file")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("dsse: PEM block is %q, want \"PUBLIC KEY\"", block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dsse: parsing public key: %w", err)
	}
	return pub, nil
}

type publicKeyVerifier struct {
	pub   crypto.PublicKey
	keyID string
}

// NewVerifier returns a Verifier for a public key: ECDSA on P-256 (SHA-256),
// P-384 (SHA-384) or P-521 (SHA-512) with ASN.1 DER signatures, or Ed25519
// over the message itself.
func NewVerifier(pub crypto.PublicKey) (Verifier, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, fmt.Errorf("dsse: unsupported ECDSA curve %s", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("dsse: unsupported public key type %T", pub)
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &publicKeyVerifier{pub: pub, keyID: id}, nil
}

func (v *publicKeyVerifier) KeyID() string { return v.keyID }

func (v *publicKeyVerifier) Verify(msg, sig []byte) error {
	switch k := v.pub.(type) {
	case *ecdsa.PublicKey:
		var digest []byte
		switch k.Curve {
		case elliptic.P256():
			s := sha256.Sum256(msg)
			digest = s[:]
		case elliptic.P384():
			s := sha512.Sum384(msg)
			digest = s[:]
		default:
			s := sha512.Sum512(msg)
			digest = s[:]
		}
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return fmt.Errorf("%w: ECDSA signature does not match key %s", ErrVerification, v.keyID)
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(k, msg, sig) {
			return fmt.Errorf("%w: Ed25519 signature does not match key %s", ErrVerification, v.keyID)
		}
	}
	return nil
}
