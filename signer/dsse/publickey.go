package dsse

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
)

// KeyID returns hallmark's id of a public key: its OpenSSH SHA-256
// fingerprint, "SHA256:" followed by the unpadded standard base64 of the
// SHA-256 of the key's SSH wire encoding (what `ssh-keygen -l -E sha256`
// prints for the key). It is the id the DSSE library used by cosign and the
// in-toto tools derives for a key that has no explicit id; an envelope whose
// keyid differed from it would make those verifiers skip the signature.
// ECDSA (P-256, P-384, P-521) and Ed25519 keys are supported.
func KeyID(pub crypto.PublicKey) (string, error) {
	var wire []byte
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		var name string
		switch k.Curve {
		case elliptic.P256():
			name = "nistp256"
		case elliptic.P384():
			name = "nistp384"
		case elliptic.P521():
			name = "nistp521"
		default:
			return "", fmt.Errorf("dsse: key id: unsupported ECDSA curve %s", k.Curve.Params().Name)
		}
		point, err := k.Bytes()
		if err != nil {
			return "", fmt.Errorf("dsse: key id: %w", err)
		}
		wire = sshString(wire, []byte("ecdsa-sha2-"+name))
		wire = sshString(wire, []byte(name))
		wire = sshString(wire, point)
	case ed25519.PublicKey:
		wire = sshString(wire, []byte("ssh-ed25519"))
		wire = sshString(wire, k)
	default:
		return "", fmt.Errorf("dsse: key id: unsupported public key type %T", pub)
	}
	sum := sha256.Sum256(wire)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:]), nil
}

// sshString appends b as an SSH wire "string": a big-endian uint32 length
// and the bytes.
func sshString(out, b []byte) []byte {
	out = binary.BigEndian.AppendUint32(out, uint32(len(b)))
	return append(out, b...)
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
