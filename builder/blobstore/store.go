// Package blobstore holds the content-addressable blob storage of the farm.
//
// Store is the one interface every backend (disk, memory) and every decorator
// speaks. Optional capabilities are small extension interfaces found by type
// assertion (Linker, FilePutter, Pinner), so a backend that cannot offer them
// still works everywhere, only slower.
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// ErrNotFound is returned (wrapped in a *NotFoundError) when a blob is absent.
var ErrNotFound = errors.New("blob not found")

// ErrDigestMismatch is returned by Put when the content does not hash to the
// digest it was stored under. Nothing is stored then.
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrTooLarge is returned by Put when a blob exceeds the store's bound.
var ErrTooLarge = errors.New("blob too large")

// NotFoundError names the absent blob.
type NotFoundError struct{ Digest digest.Digest }

func (e *NotFoundError) Error() string        { return fmt.Sprintf("blob %s not found", e.Digest) }
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

var _ error = (*NotFoundError)(nil)

// Store is content-addressable blob storage. All methods are safe for
// concurrent use. The empty blob is always present.
type Store interface {
	// Get returns the blob's content from offset on. offset must be within
	// [0, d.Size]. The caller closes the reader.
	Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error)
	// Put stores r's content under d. The blob becomes visible only after its
	// content was verified against d; a failed Put leaves nothing behind.
	Put(ctx context.Context, d digest.Digest, r io.Reader) error
	// FindMissing returns the members of ds that are not stored, in input order.
	FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error)
}

// Linker is implemented by stores whose blobs are files on the local file
// system. Path returns a path that may be hard-linked or read; the file must
// not be modified. It returns ErrNotFound if the blob is absent.
type Linker interface {
	Path(ctx context.Context, d digest.Digest) (string, error)
}

// FilePutter is implemented by stores that can take ownership of a local file
// (by renaming or linking it) instead of copying it. The file's content must
// hash to d; the caller must not use path afterwards.
type FilePutter interface {
	PutFile(ctx context.Context, d digest.Digest, path string) error
}

// Pinner is implemented by stores that evict. Blobs pinned are never evicted
// until release is called; Pin fails with ErrNotFound (listing what is
// missing through FindMissing first is the caller's job) if any is absent.
type Pinner interface {
	Pin(ctx context.Context, ds []digest.Digest) (release func(), err error)
}
