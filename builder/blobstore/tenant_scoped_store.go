package blobstore

import (
	"bufio"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// TenantScopes shares one physical store among tenants, each of which sees
// only its own namespace (a TenantScopedStore). Blobs are stored once
// physically; each tenant has a membership index of the blobs it uploaded
// or its actions produced, and every answer a tenant gets comes from its
// own index, so nothing tells it whether another tenant holds a blob.
//
// A blob leaves the physical store when the last tenant that holds it
// evicts it (if the physical store can Delete).
//
// Memberships are persisted under DIR/<tenant>/members, an append-only
// file of lines "+<hash> <size>" and "-<hash> <size>" that is compacted
// when it is opened.
type TenantScopes struct {
	base Store
	dir  string

	// phys guards the decision to delete a blob physically (write lock)
	// against tenants adding it to their membership (read lock).
	phys    sync.RWMutex
	mu      sync.Mutex
	tenants map[string]*TenantScopedStore
}

// Deleter is implemented by stores that can remove a blob (Disk).
type Deleter interface {
	Delete(ctx context.Context, d digest.Digest) error
}

// NewTenantScopes shares base among tenants whose memberships live in dir.
func NewTenantScopes(base Store, dir string) (*TenantScopes, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tenant scopes: %w", err)
	}
	return &TenantScopes{base: base, dir: dir, tenants: map[string]*TenantScopedStore{}}, nil
}

// Open returns the namespace of tenant name (the same one on every call),
// loading its membership from disk the first time, and sets its quota:
// maxBytes bounds the bytes of its blobs (0: no bound).
func (s *TenantScopes) Open(ctx context.Context, name string, maxBytes int64) (*TenantScopedStore, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("tenant scopes: bad tenant name %q", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tenants[name]; t != nil {
		t.mu.Lock()
		t.max = maxBytes
		t.mu.Unlock()
		return t, nil
	}
	t := &TenantScopedStore{scopes: s, name: name, max: maxBytes, index: map[digest.Digest]*member{}, lru: list.New()}
	dir := filepath.Join(s.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tenant %q: %w", name, err)
	}
	if err := t.load(ctx, filepath.Join(dir, "members")); err != nil {
		return nil, fmt.Errorf("tenant %q: %w", name, err)
	}
	s.tenants[name] = t
	return t, nil
}

// heldElsewhere reports whether a tenant other than except holds d.
func (s *TenantScopes) heldElsewhere(except *TenantScopedStore, d digest.Digest) bool {
	s.mu.Lock()
	ts := make([]*TenantScopedStore, 0, len(s.tenants))
	for _, t := range s.tenants {
		if t != except {
			ts = append(ts, t)
		}
	}
	s.mu.Unlock()
	for _, t := range ts {
		if t.holds(d) {
			return true
		}
	}
	return false
}

// TenantScopedStore is one tenant's view of the shared store. It
// implements Store, Linker, Pinner and FilePutter (when the base does).
type TenantScopedStore struct {
	scopes *TenantScopes
	name   string

	mu    sync.Mutex
	max   int64
	used  int64
	index map[digest.Digest]*member
	lru   *list.List // of *member, most recently used first; pinned ones are out
	log   *os.File
	w     *bufio.Writer
}

type member struct {
	d    digest.Digest
	pins int
	elem *list.Element
}

var (
	_ Store      = (*TenantScopedStore)(nil)
	_ Linker     = (*TenantScopedStore)(nil)
	_ Pinner     = (*TenantScopedStore)(nil)
	_ FilePutter = (*TenantScopedStore)(nil)
)

// Tenant returns the tenant's name.
func (t *TenantScopedStore) Tenant() string { return t.name }

// Used returns the bytes of the tenant's blobs.
func (t *TenantScopedStore) Used() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.used
}

func (t *TenantScopedStore) load(ctx context.Context, path string) error {
	live := map[digest.Digest]bool{}
	var order []digest.Digest
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if len(line) < 2 {
				continue
			}
			hash, size, ok := strings.Cut(line[1:], " ")
			n, err := strconv.ParseInt(size, 10, 64)
			if !ok || err != nil {
				continue // a torn last line
			}
			d, err := digest.New(hash, n)
			if err != nil {
				continue
			}
			switch line[0] {
			case '+':
				if !live[d] {
					order = append(order, d)
				}
				live[d] = true
			case '-':
				delete(live, d)
			}
		}
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var keep []digest.Digest
	for _, d := range order {
		if live[d] {
			keep = append(keep, d)
		}
	}
	// Blobs evicted from the physical store meanwhile are not members.
	if len(keep) > 0 {
		missing, err := t.scopes.base.FindMissing(ctx, keep)
		if err != nil {
			return err
		}
		gone := map[digest.Digest]bool{}
		for _, d := range missing {
			gone[d] = true
		}
		k := keep[:0]
		for _, d := range keep {
			if !gone[d] {
				k = append(k, d)
			}
		}
		keep = k
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, d := range keep {
		fmt.Fprintf(w, "+%s %d\n", d.Hash, d.Size)
		m := &member{d: d}
		m.elem = t.lru.PushFront(m)
		t.index[d] = m
		t.used += d.Size
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	t.log, err = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	t.w = bufio.NewWriterSize(t.log, 4096)
	return nil
}

// record appends a membership change; callers hold t.mu. A lost line only
// makes the tenant upload a blob again.
func (t *TenantScopedStore) recordLocked(op byte, d digest.Digest) {
	fmt.Fprintf(t.w, "%c%s %d\n", op, d.Hash, d.Size)
	t.w.Flush()
}

func (t *TenantScopedStore) holds(d digest.Digest) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.index[d] != nil
}

// touch marks d used and reports whether the tenant holds it.
func (t *TenantScopedStore) touch(d digest.Digest) bool {
	if d.IsEmpty() {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.index[d]
	if m == nil {
		return false
	}
	if m.elem != nil {
		t.lru.MoveToFront(m.elem)
	}
	return true
}

// Get implements Store: only blobs in the tenant's namespace are found.
func (t *TenantScopedStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if !t.touch(d) {
		return nil, &NotFoundError{Digest: d}
	}
	return t.scopes.base.Get(ctx, d, offset)
}

// Path implements Linker for blobs in the tenant's namespace.
func (t *TenantScopedStore) Path(ctx context.Context, d digest.Digest) (string, error) {
	if !t.touch(d) {
		return "", &NotFoundError{Digest: d}
	}
	l, ok := As[Linker](t.scopes.base)
	if !ok {
		return "", errors.New("the shared store has no local paths")
	}
	return l.Path(ctx, d)
}

// FindMissing implements Store. It answers from the tenant's own
// membership: a blob that only other tenants hold is missing.
func (t *TenantScopedStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var missing []digest.Digest
	for _, d := range ds {
		if !t.touch(d) {
			missing = append(missing, d)
		}
	}
	return missing, nil
}

// verifyingReader hashes everything read through it.
type verifyingReader struct {
	r io.Reader
	h *digest.Hasher
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	return n, err
}

// Put implements Store. The whole content is always read and verified
// against d, also when the blob is already stored physically (for this or
// another tenant), so neither the answer nor the work done depends on what
// other tenants hold. Space is made within the tenant's quota first, by
// evicting the tenant's own least recently used blobs.
func (t *TenantScopedStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	if d.IsEmpty() {
		return t.scopes.base.Put(ctx, d, r)
	}
	if err := t.reserve(ctx, d); err != nil {
		return err
	}
	vr := &verifyingReader{r: io.LimitReader(r, d.Size+1), h: digest.NewHasher()}
	if err := t.scopes.base.Put(ctx, d, vr); err != nil {
		return err
	}
	if _, err := copyCtx(ctx, io.Discard, vr); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if got := vr.h.Digest(); got != d {
		return fmt.Errorf("%w: content hashes to %s, not %s", ErrDigestMismatch, got, d)
	}
	return t.join(ctx, d)
}

// PutFile implements FilePutter (through the base's, or by copying).
func (t *TenantScopedStore) PutFile(ctx context.Context, d digest.Digest, path string) error {
	if err := t.reserve(ctx, d); err != nil {
		os.Remove(path)
		return err
	}
	if fp, ok := As[FilePutter](t.scopes.base); ok {
		if err := fp.PutFile(ctx, d, path); err != nil {
			return err
		}
	} else {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		err = t.scopes.base.Put(ctx, d, f)
		f.Close()
		os.Remove(path)
		if err != nil {
			return err
		}
	}
	return t.join(ctx, d)
}

// Adopt adds blobs already in the physical store (outputs the farm's
// workers stored for this tenant) to the namespace, within its quota.
// Blobs absent from the physical store are reported as NotFound.
func (t *TenantScopedStore) Adopt(ctx context.Context, ds []digest.Digest) error {
	for _, d := range ds {
		if d.IsEmpty() || t.touch(d) {
			continue
		}
		if err := t.reserve(ctx, d); err != nil {
			return err
		}
		if err := t.join(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// join adds d, which the base just stored, to the membership. It fails with
// UNAVAILABLE in the rare race where another tenant's eviction deleted the
// blob physically in between; the client retries the upload.
func (t *TenantScopedStore) join(ctx context.Context, d digest.Digest) error {
	t.scopes.phys.RLock()
	defer t.scopes.phys.RUnlock()
	missing, err := t.scopes.base.FindMissing(ctx, []digest.Digest{d})
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return status.Errorf(codes.Unavailable, "blob %s was evicted while it was being stored; upload it again", d)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.index[d]; m != nil {
		if m.elem != nil {
			t.lru.MoveToFront(m.elem)
		}
		return nil
	}
	m := &member{d: d}
	m.elem = t.lru.PushFront(m)
	t.index[d] = m
	t.used += d.Size
	t.recordLocked('+', d)
	return nil
}

// reserve makes room for d within the quota by evicting the tenant's own
// least recently used unpinned blobs. It fails with RESOURCE_EXHAUSTED and
// a QuotaFailure naming cas_bytes when pinned blobs leave no room.
func (t *TenantScopedStore) reserve(ctx context.Context, d digest.Digest) error {
	t.mu.Lock()
	if t.max <= 0 || t.index[d] != nil {
		t.mu.Unlock()
		return nil
	}
	if d.Size > t.max {
		t.mu.Unlock()
		return QuotaExceeded(t.name, "cas_bytes", fmt.Sprintf("blob %s (%d bytes) is larger than the tenant's whole CAS quota of %d bytes", d, d.Size, t.max))
	}
	var evicted []digest.Digest
	for t.used+d.Size > t.max {
		e := t.lru.Back()
		if e == nil {
			used, max := t.used, t.max
			t.mu.Unlock()
			t.dropPhysically(ctx, evicted)
			return QuotaExceeded(t.name, "cas_bytes", fmt.Sprintf("%d of %d bytes are held by blobs that running actions need; retry when they finished", used, max))
		}
		m := e.Value.(*member)
		t.lru.Remove(e)
		delete(t.index, m.d)
		t.used -= m.d.Size
		t.recordLocked('-', m.d)
		evicted = append(evicted, m.d)
	}
	t.mu.Unlock()
	t.dropPhysically(ctx, evicted)
	return nil
}

// dropPhysically deletes blobs no tenant holds any more from the physical
// store, if it can delete.
func (t *TenantScopedStore) dropPhysically(ctx context.Context, ds []digest.Digest) {
	if len(ds) == 0 {
		return
	}
	del, ok := As[Deleter](t.scopes.base)
	if !ok {
		return
	}
	t.scopes.phys.Lock()
	defer t.scopes.phys.Unlock()
	for _, d := range ds {
		if t.holds(d) || t.scopes.heldElsewhere(t, d) {
			continue
		}
		del.Delete(ctx, d) // a pinned blob stays; it is garbage for later
	}
}

// Pin implements Pinner: the blobs must be in the namespace; they are kept
// from eviction both in the namespace and physically.
func (t *TenantScopedStore) Pin(ctx context.Context, ds []digest.Digest) (func(), error) {
	t.mu.Lock()
	var pinned []*member
	unpin := func() {
		for _, m := range pinned {
			m.pins--
			if m.pins == 0 && t.index[m.d] == m {
				m.elem = t.lru.PushFront(m)
			}
		}
	}
	for _, d := range ds {
		if d.IsEmpty() {
			continue
		}
		m := t.index[d]
		if m == nil {
			unpin()
			t.mu.Unlock()
			return nil, &NotFoundError{Digest: d}
		}
		m.pins++
		if m.elem != nil {
			t.lru.Remove(m.elem)
			m.elem = nil
		}
		pinned = append(pinned, m)
	}
	t.mu.Unlock()
	release := func() {}
	if p, ok := As[Pinner](t.scopes.base); ok {
		r, err := p.Pin(ctx, ds)
		if err != nil {
			t.mu.Lock()
			unpin()
			t.mu.Unlock()
			return nil, err
		}
		release = r
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			release()
			t.mu.Lock()
			unpin()
			t.mu.Unlock()
		})
	}, nil
}

// Close flushes and closes the membership file.
func (t *TenantScopedStore) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.log == nil {
		return nil
	}
	t.w.Flush()
	err := t.log.Close()
	t.log = nil
	return err
}
