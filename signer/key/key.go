// Package key holds the signer's private key behind a small interface.
//
// Signer is what the signer process signs with. The file-key implementation
// here (ECDSA P-256, PEM PKCS#8) is the default; a KMS or PKCS#11 backend
// implements the same three methods and nothing else changes.
//
// Key ids: KeyID is the public key's OpenSSH SHA-256 fingerprint
// (dsse.KeyID), "SHA256:" and unpadded base64. Anyone holding signer.pub can
// recompute it: `ssh-keygen -i -m PKCS8 -f signer.pub | ssh-keygen -l -E sha256 -f -`.
package key

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hallmark-build/hallmark/signer/dsse"
)

// File names written by Generate.
const (
	PrivateKeyFile = "signer.key"
	PublicKeyFile  = "signer.pub"
)

// ErrInsecurePermissions is returned (wrapped) when a private key file can be
// read or written by group or others.
var ErrInsecurePermissions = errors.New("private key file is accessible by group or others")

// Signer signs messages with a private key it does not reveal.
type Signer interface {
	// KeyID identifies the public key (see the package comment).
	KeyID() string
	// Public returns the public key.
	Public() crypto.PublicKey
	// Sign signs msg. For ECDSA keys the message is hashed with SHA-256 and
	// the signature is ASN.1 DER, as DSSE verifiers and cosign expect.
	Sign(ctx context.Context, msg []byte) ([]byte, error)
}

var _ dsse.Signer = Signer(nil)

type ecdsaSigner struct {
	priv  *ecdsa.PrivateKey
	keyID string
}

// NewECDSA wraps an in-memory ECDSA P-256 private key. It is meant for tests
// and for backends that load key material themselves.
func NewECDSA(priv *ecdsa.PrivateKey) (Signer, error) {
	if priv == nil || priv.Curve != elliptic.P256() {
		return nil, errors.New("key: want an ECDSA P-256 private key")
	}
	id, err := dsse.KeyID(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &ecdsaSigner{priv: priv, keyID: id}, nil
}

func (s *ecdsaSigner) KeyID() string            { return s.keyID }
func (s *ecdsaSigner) Public() crypto.PublicKey { return &s.priv.PublicKey }

func (s *ecdsaSigner) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, s.priv, sum[:])
}

// CheckPermissions returns an error wrapping ErrInsecurePermissions if the
// file at path grants any permission to group or others.
func CheckPermissions(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("key: %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("key: %s has mode %04o: %w (chmod 600 it)", path, perm, ErrInsecurePermissions)
	}
	return nil
}

// LoadFile reads a PEM "PRIVATE KEY" (PKCS#8) ECDSA P-256 key. It refuses a
// file that group or others may access.
func LoadFile(path string) (Signer, error) {
	if err := CheckPermissions(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("key: %s holds no PEM block", path)
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("key: %s: PEM block is %q, want \"PRIVATE KEY\" (PKCS#8)", path, block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key: %s: %w", path, err)
	}
	priv, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key: %s holds a %T, want an ECDSA P-256 key", path, k)
	}
	s, err := NewECDSA(priv)
	if err != nil {
		return nil, fmt.Errorf("key: %s: %w", path, err)
	}
	return s, nil
}

// Generate makes a fresh ECDSA P-256 key and writes dir/signer.key (PEM
// PKCS#8, mode 0600) and dir/signer.pub (PEM PKIX, mode 0644). It creates dir
// (mode 0700) if needed and refuses to overwrite an existing key. It returns
// the new key's id.
func Generate(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("key: %w", err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("key: generating: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return "", fmt.Errorf("key: %w", err)
	}
	privPath := filepath.Join(dir, PrivateKeyFile)
	pubPath := filepath.Join(dir, PublicKeyFile)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", fmt.Errorf("key: %s already exists; refusing to overwrite it", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("key: %w", err)
		}
	}
	if err := writeExclusive(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return "", err
	}
	if err := writeExclusive(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		os.Remove(privPath)
		return "", err
	}
	return dsse.KeyID(&priv.PublicKey)
}

func writeExclusive(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	if err := f.Chmod(mode); err != nil { // umask must not loosen or tighten it
		f.Close()
		os.Remove(path)
		return fmt.Errorf("key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("key: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("key: writing %s: %w", path, err)
	}
	return nil
}

// LoadPublicFile reads a PEM PKIX public key file (signer.pub).
func LoadPublicFile(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	pub, err := dsse.ParsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("key: %s: %w", path, err)
	}
	return pub, nil
}
