package blobstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// Memory is a Store that keeps blobs in memory, for tests and small tools.
// It does not evict.
type Memory struct {
	mu    sync.RWMutex
	blobs map[digest.Digest][]byte
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store that accepts blobs of any size.
func NewMemory() *Memory {
	return &Memory{blobs: map[digest.Digest][]byte{}}
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if offset < 0 || offset > d.Size {
		return nil, fmt.Errorf("%w: offset %d for blob %s", ErrOutOfRange, offset, d)
	}
	if d.IsEmpty() {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	m.mu.RLock()
	b, ok := m.blobs[d]
	m.mu.RUnlock()
	if !ok {
		return nil, &NotFoundError{Digest: d}
	}
	return io.NopCloser(bytes.NewReader(b[offset:])), nil
}

// Put implements Store.
func (m *Memory) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	b, err := readVerified(ctx, d, r)
	if err != nil {
		return err
	}
	if d.IsEmpty() {
		return nil
	}
	m.mu.Lock()
	m.blobs[d] = b
	m.mu.Unlock()
	return nil
}

// FindMissing implements Store.
func (m *Memory) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var missing []digest.Digest
	for _, d := range ds {
		if _, ok := m.blobs[d]; !ok && !d.IsEmpty() {
			missing = append(missing, d)
		}
	}
	return missing, nil
}

// Delete removes a blob; tests use it to simulate eviction.
func (m *Memory) Delete(d digest.Digest) {
	m.mu.Lock()
	delete(m.blobs, d)
	m.mu.Unlock()
}

// readVerified reads exactly d.Size bytes from r and checks that they hash to d.
func readVerified(ctx context.Context, d digest.Digest, r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	h := digest.NewHasher()
	if _, err := copyCtx(ctx, io.MultiWriter(&buf, h), io.LimitReader(r, d.Size+1)); err != nil {
		return nil, err
	}
	if err := check(d, h); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// check compares what a Hasher saw with the expected digest.
func check(want digest.Digest, h *digest.Hasher) error {
	if h.Size() != want.Size {
		if h.Size() > want.Size {
			return fmt.Errorf("%w: blob %s has more than %d bytes", ErrDigestMismatch, want, want.Size)
		}
		return fmt.Errorf("%w: blob %s has %d bytes, not %d", ErrDigestMismatch, want, h.Size(), want.Size)
	}
	if got := h.Digest(); got != want {
		return fmt.Errorf("%w: content of blob %s hashes to %s", ErrDigestMismatch, want, got.Hash)
	}
	return nil
}

// copyCtx is io.Copy that stops between chunks once ctx is done.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := r.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
