// Package digest holds the content digest value type used across the farm.
//
// A Digest is validated when it is made: its hash is lower-case hex of the
// length its function requires and its size is not negative. Values are
// comparable, so they work as map keys.
package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// ErrInvalid is the category of every error this package returns for bad input.
var ErrInvalid = errors.New("invalid digest")

// Function is a digest function. Only SHA-256 is supported today.
type Function = repb.DigestFunction_Value

// SHA256 is the farm's digest function.
const SHA256 = repb.DigestFunction_SHA256

// Digest identifies a blob by the SHA-256 of its content and its size.
type Digest struct {
	Hash string // lower-case hex, 64 characters
	Size int64
}

// Empty is the digest of the empty blob.
var Empty = Digest{Hash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Size: 0}

// New validates hash and size and returns the digest.
func New(hash string, size int64) (Digest, error) {
	if size < 0 {
		return Digest{}, fmt.Errorf("%w: negative size %d", ErrInvalid, size)
	}
	if len(hash) != sha256.Size*2 {
		return Digest{}, fmt.Errorf("%w: hash %q has %d characters, SHA-256 needs %d", ErrInvalid, clip(hash), len(hash), sha256.Size*2)
	}
	for i := 0; i < len(hash); i++ {
		c := hash[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return Digest{}, fmt.Errorf("%w: hash %q is not lower-case hex", ErrInvalid, clip(hash))
		}
	}
	return Digest{Hash: hash, Size: size}, nil
}

// MustNew is New for tests and constants; it panics on bad input.
func MustNew(hash string, size int64) Digest {
	d, err := New(hash, size)
	if err != nil {
		panic(err)
	}
	return d
}

// FromProto validates a REAPI digest. A nil digest is invalid.
func FromProto(p *repb.Digest) (Digest, error) {
	if p == nil {
		return Digest{}, fmt.Errorf("%w: missing digest", ErrInvalid)
	}
	return New(p.GetHash(), p.GetSizeBytes())
}

// ToProto returns the REAPI form of d.
func (d Digest) ToProto() *repb.Digest {
	return &repb.Digest{Hash: d.Hash, SizeBytes: d.Size}
}

// String returns "hash/size", the form used in resource names and messages.
func (d Digest) String() string {
	return d.Hash + "/" + strconv.FormatInt(d.Size, 10)
}

// IsEmpty reports whether d is the digest of the empty blob.
func (d Digest) IsEmpty() bool { return d == Empty }

// Parse reads the "hash/size" form that String writes.
func Parse(s string) (Digest, error) {
	h, sz, ok := strings.Cut(s, "/")
	if !ok {
		return Digest{}, fmt.Errorf("%w: %q is not of the form hash/size", ErrInvalid, clip(s))
	}
	n, err := strconv.ParseInt(sz, 10, 64)
	if err != nil {
		return Digest{}, fmt.Errorf("%w: size %q is not a number", ErrInvalid, clip(sz))
	}
	return New(h, n)
}

// OfBytes returns the digest of b.
func OfBytes(b []byte) Digest {
	sum := sha256.Sum256(b)
	return Digest{Hash: hex.EncodeToString(sum[:]), Size: int64(len(b))}
}

// OfReader reads r to its end and returns the digest of what it read.
func OfReader(r io.Reader) (Digest, error) {
	h := NewHasher()
	if _, err := io.Copy(h, r); err != nil {
		return Digest{}, err
	}
	return h.Digest(), nil
}

// Hasher computes a digest incrementally.
type Hasher struct {
	h hash.Hash
	n int64
}

// NewHasher returns a Hasher for the farm's digest function.
func NewHasher() *Hasher { return &Hasher{h: sha256.New()} }

// Write adds p to the hash; it never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.h.Write(p)
}

// Size returns how many bytes were written.
func (h *Hasher) Size() int64 { return h.n }

// Digest returns the digest of everything written so far.
func (h *Hasher) Digest() Digest {
	return Digest{Hash: hex.EncodeToString(h.h.Sum(nil)), Size: h.n}
}

// CheckFunction accepts the digest functions the farm serves. UNKNOWN means
// "the server's default" in REAPI and is accepted as SHA-256.
func CheckFunction(f Function) error {
	switch f {
	case repb.DigestFunction_UNKNOWN, repb.DigestFunction_SHA256:
		return nil
	}
	return fmt.Errorf("%w: digest function %s is not supported; this farm uses SHA256", ErrInvalid, f)
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
