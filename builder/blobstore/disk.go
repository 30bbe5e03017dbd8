package blobstore

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// Disk is a Store whose blobs are files in a directory on the local file
// system. It implements Linker, FilePutter and Pinner.
//
// # On-disk layout
//
// The layout is a contract: other processes (the signer) read it directly.
//
//	DIR/<h0h1>/<hash>   one regular file per blob, mode 0444, named by the
//	                    lower-case hex SHA-256 of its content, in a directory
//	                    named by the first two hex characters of the hash.
//	                    The file's length is the blob's size. A file is
//	                    published (renamed into place) only after its size and
//	                    hash were verified and its content fsynced; it is never
//	                    modified afterwards (only deleted by eviction), so it
//	                    may be hard-linked and read without copying.
//	DIR/tmp/            files being written; never blobs. Emptied on open.
//	DIR/synced          only with WithPeriodicSync: the time (Unix ns) before
//	                    which every published blob is on stable storage.
//
// The empty blob is always present and takes no space in the bound; its file
// exists for Path's sake. BlobPath gives a blob's path.
//
// # Eviction
//
// With WithMaxBytes the store keeps the total size of its blobs under a bound
// by deleting least recently used blobs (Get, Path, Put of an existing blob
// and FindMissing finding it count as use). Pinned blobs are never evicted.
// The recency order is kept in memory; on open it is rebuilt from the files'
// access and modification times. A file is trusted on open (it was verified
// before it was published); files with bad names in the shard directories are
// ignored.
type Disk struct {
	dir     string
	tmp     string
	max     int64 // bound on the sum of blob sizes; 0 means none
	maxBlob int64
	noSync  bool // no per-blob fsync (WithoutFsyncUnsafe or WithPeriodicSync)

	periodic time.Duration
	dirty    atomic.Bool // a blob was published since the last checkpoint
	stop     chan struct{}
	stopped  chan struct{}
	closeMu  sync.Once

	mu    sync.Mutex
	index map[string]*entry // by hash
	lru   *list.List        // of *entry, most recent first; pinned entries are not in it
	used  int64

	shards sync.Map // shard directories known to exist
}

type entry struct {
	hash string
	size int64
	pins int
	elem *list.Element
}

var (
	_ Store      = (*Disk)(nil)
	_ Linker     = (*Disk)(nil)
	_ FilePutter = (*Disk)(nil)
	_ Pinner     = (*Disk)(nil)
)

// DefaultMaxBlobBytes is the largest blob a Disk accepts unless
// WithMaxBlobBytes says otherwise.
const DefaultMaxBlobBytes = 16 << 30

type diskOptions struct {
	max, maxBlob int64
	noSync       bool
	periodic     time.Duration
}

// DiskOption configures NewDisk.
type DiskOption func(*diskOptions) error

// WithMaxBytes bounds the total size of the stored blobs; least recently used
// unpinned blobs are evicted to stay under it. The default, 0, is no bound.
func WithMaxBytes(n int64) DiskOption {
	return func(o *diskOptions) error {
		if n < 0 {
			return fmt.Errorf("WithMaxBytes(%d): the bound must not be negative", n)
		}
		o.max = n
		return nil
	}
}

// WithMaxBlobBytes sets the largest blob Put accepts (ErrTooLarge beyond).
// The default is DefaultMaxBlobBytes.
func WithMaxBlobBytes(n int64) DiskOption {
	return func(o *diskOptions) error {
		if n <= 0 {
			return fmt.Errorf("WithMaxBlobBytes(%d): the limit must be positive", n)
		}
		o.maxBlob = n
		return nil
	}
}

// WithoutFsyncUnsafe skips the fsync of each blob file and of its directory
// (about 3-5 ms per blob on this machine's disk). Blobs are still verified
// and renamed into place atomically, so a killed server (SIGKILL) never
// leaves a partial or corrupt blob; but after a power loss or kernel crash
// a recently published blob may be empty or torn under its final name. Use
// it only where the data directory is expendable (tests, benchmarks, a
// cache in front of durable storage). The default syncs.
func WithoutFsyncUnsafe() DiskOption {
	return func(o *diskOptions) error {
		o.noSync = true
		return nil
	}
}

// WithPeriodicSync replaces the two fsyncs per blob with one syncfs of the
// whole file system every interval (only while blobs are being written),
// after which the store records a checkpoint in DIR/synced. A blob that was
// published after the last checkpoint is re-hashed when the store is opened
// and deleted if it does not match, so even a power loss never leaves a
// corrupt blob visible; but blobs acknowledged within the last interval
// before a power loss or kernel crash may be lost (a killed server loses
// nothing). Call Close to stop the syncing and record a final checkpoint.
func WithPeriodicSync(interval time.Duration) DiskOption {
	return func(o *diskOptions) error {
		if interval <= 0 {
			return fmt.Errorf("WithPeriodicSync(%v): the interval must be positive", interval)
		}
		o.periodic = interval
		return nil
	}
}

// BlobPath returns where a Disk rooted at dir keeps the blob d.
func BlobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, d.Hash[:2], d.Hash)
}

// NewDisk opens (creating it if needed) the store in dir, deletes leftovers
// of interrupted writes and indexes the blobs present.
func NewDisk(dir string, opts ...DiskOption) (*Disk, error) {
	o := diskOptions{maxBlob: DefaultMaxBlobBytes}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.max > 0 && o.maxBlob > o.max {
		o.maxBlob = o.max
	}
	s := &Disk{
		dir:     dir,
		tmp:     filepath.Join(dir, "tmp"),
		max:     o.max,
		maxBlob: o.maxBlob,
		noSync:  o.noSync || o.periodic > 0,

		periodic: o.periodic,
		index:    map[string]*entry{},
		lru:      list.New(),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("blob store: %w", err)
	}
	if err := os.RemoveAll(s.tmp); err != nil {
		return nil, fmt.Errorf("blob store: removing leftovers: %w", err)
	}
	if err := os.Mkdir(s.tmp, 0o700); err != nil {
		return nil, fmt.Errorf("blob store: %w", err)
	}
	var verifySince time.Time // zero: trust every blob
	if s.periodic > 0 {
		t, err := readCheckpoint(dir)
		if err != nil {
			return nil, err
		}
		verifySince = t.Add(-checkpointSlack)
	}
	if err := s.scan(verifySince); err != nil {
		return nil, err
	}
	// The empty blob's file, for Path.
	ep := BlobPath(dir, digest.Empty)
	if _, err := os.Lstat(ep); errors.Is(err, fs.ErrNotExist) {
		if err := s.mkShard(digest.Empty.Hash); err != nil {
			return nil, err
		}
		if err := os.WriteFile(ep, nil, 0o444); err != nil {
			return nil, fmt.Errorf("blob store: %w", err)
		}
	}
	s.mu.Lock()
	err := s.evictLocked(0)
	s.mu.Unlock()
	if err != nil && !errors.Is(err, ErrFull) {
		return nil, err
	}
	if s.periodic > 0 {
		s.stop, s.stopped = make(chan struct{}), make(chan struct{})
		go s.syncLoop()
	}
	return s, nil
}

type found struct {
	hash string
	size int64
	t    time.Time
}

// scan indexes the blobs present. Blobs whose inode changed at or after
// verifySince (if not zero) may not have reached the disk before a crash and
// are re-hashed; those that do not match their name are deleted.
func (s *Disk) scan(verifySince time.Time) error {
	shards, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	var all []found
	for _, sh := range shards {
		if !sh.IsDir() || len(sh.Name()) != 2 || !isHex(sh.Name()) {
			continue
		}
		files, err := os.ReadDir(filepath.Join(s.dir, sh.Name()))
		if err != nil {
			return fmt.Errorf("blob store: %w", err)
		}
		s.shards.Store(sh.Name(), true)
		for _, f := range files {
			if !f.Type().IsRegular() {
				continue
			}
			info, err := f.Info()
			if err != nil {
				continue // deleted meanwhile
			}
			d, err := digest.New(f.Name(), info.Size())
			if err != nil || d.Hash[:2] != sh.Name() || d.IsEmpty() {
				continue
			}
			t := info.ModTime()
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				if at := time.Unix(st.Atim.Sec, st.Atim.Nsec); at.After(t) {
					t = at
				}
				ct := time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
				if !verifySince.IsZero() && !ct.Before(verifySince) && !verifyFile(filepath.Join(s.dir, sh.Name(), f.Name()), d) {
					os.Remove(filepath.Join(s.dir, sh.Name(), f.Name()))
					continue
				}
			}
			all = append(all, found{d.Hash, d.Size, t})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].t.Before(all[j].t) })
	for _, f := range all {
		e := &entry{hash: f.hash, size: f.size}
		e.elem = s.lru.PushFront(e)
		s.index[f.hash] = e
		s.used += f.size
	}
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Dir returns the store's root directory.
func (s *Disk) Dir() string { return s.dir }

// Used returns the total size of the stored blobs.
func (s *Disk) Used() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// lookup finds d and marks it used; callers hold s.mu.
func (s *Disk) lookupLocked(d digest.Digest) *entry {
	e := s.index[d.Hash]
	if e == nil || e.size != d.Size {
		return nil
	}
	if e.elem != nil {
		s.lru.MoveToFront(e.elem)
	}
	return e
}

// Get implements Store.
func (s *Disk) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if offset < 0 || offset > d.Size {
		return nil, fmt.Errorf("%w: offset %d for blob %s", ErrOutOfRange, offset, d)
	}
	if d.IsEmpty() {
		return io.NopCloser(eofReader{}), nil
	}
	s.mu.Lock()
	e := s.lookupLocked(d)
	s.mu.Unlock()
	if e == nil {
		return nil, &NotFoundError{Digest: d}
	}
	f, err := os.Open(BlobPath(s.dir, d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &NotFoundError{Digest: d} // evicted meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("blob %s: %w", d, err)
		}
	}
	return f, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// FindMissing implements Store.
func (s *Disk) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var missing []digest.Digest
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		if !d.IsEmpty() && s.lookupLocked(d) == nil {
			missing = append(missing, d)
		}
	}
	return missing, nil
}

func (s *Disk) has(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return d.IsEmpty() || s.lookupLocked(d) != nil
}

func (s *Disk) checkSize(d digest.Digest) error {
	if d.Size > s.maxBlob {
		return fmt.Errorf("%w: blob %s is larger than the limit of %d bytes", ErrTooLarge, d, s.maxBlob)
	}
	return nil
}

// Put implements Store. The content is written to a temporary file, verified
// against d while it is written, fsynced and only then renamed into place.
func (s *Disk) Put(ctx context.Context, d digest.Digest, r io.Reader) (err error) {
	if err := s.checkSize(d); err != nil {
		return err
	}
	if d.IsEmpty() {
		_, err := readVerified(ctx, d, r)
		return err
	}
	if s.has(d) {
		return nil
	}
	f, err := os.CreateTemp(s.tmp, "put-")
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	h := digest.NewHasher()
	if _, err := copyCtx(ctx, io.MultiWriter(f, h), io.LimitReader(r, d.Size+1)); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if err := check(d, h); err != nil {
		return err
	}
	if err := f.Chmod(0o444); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if err := s.sync(f); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	return s.publish(d, tmp)
}

// PutFile implements FilePutter. The file is first moved into the store's
// temporary area (so nobody else can reach it by path), verified there, made
// read-only and then renamed into place. path must name a regular file; on
// any failure the file is deleted. If path is on another file system the
// content is copied.
func (s *Disk) PutFile(ctx context.Context, d digest.Digest, path string) (err error) {
	if err := s.checkSize(d); err != nil {
		os.Remove(path)
		return err
	}
	tmpf, err := os.CreateTemp(s.tmp, "file-")
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	tmp := tmpf.Name()
	tmpf.Close()
	if err := os.Rename(path, tmp); err != nil {
		os.Remove(tmp)
		if errors.Is(err, syscall.EXDEV) {
			return s.putCopy(ctx, d, path)
		}
		return fmt.Errorf("blob %s: taking %s: %w", d, path, err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	f, err := os.OpenFile(tmp, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("blob %s: %s is not a regular file: %w", d, path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("blob %s: %s is not a regular file", d, path)
	}
	h := digest.NewHasher()
	if _, err := copyCtx(ctx, h, io.LimitReader(f, d.Size+1)); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if err := check(d, h); err != nil {
		return err
	}
	if d.IsEmpty() {
		os.Remove(tmp)
		return nil
	}
	if err := f.Chmod(0o444); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if err := s.sync(f); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	return s.publish(d, tmp)
}

func (s *Disk) putCopy(ctx context.Context, d digest.Digest, path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	err = s.Put(ctx, d, f)
	f.Close()
	os.Remove(path)
	return err
}

func (s *Disk) mkShard(hash string) error {
	name := hash[:2]
	if _, ok := s.shards.Load(name); ok {
		return nil
	}
	p := filepath.Join(s.dir, name)
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("blob store: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.shards.Store(name, true)
	return nil
}

// publish renames the verified file tmp into place as blob d, evicting
// other blobs first if the bound requires it.
func (s *Disk) publish(d digest.Digest, tmp string) error {
	if err := s.mkShard(d.Hash); err != nil {
		return err
	}
	final := BlobPath(s.dir, d)
	s.mu.Lock()
	if s.lookupLocked(d) != nil {
		s.mu.Unlock()
		os.Remove(tmp)
		return nil
	}
	if err := s.evictLocked(d.Size); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if old := s.index[d.Hash]; old != nil {
		// A file with this hash but another size cannot exist: the file
		// was verified. Drop the stale entry anyway.
		s.removeLocked(old)
	}
	e := &entry{hash: d.Hash, size: d.Size}
	e.elem = s.lru.PushFront(e)
	s.index[d.Hash] = e
	s.used += d.Size
	s.mu.Unlock()
	s.dirty.Store(true)
	if s.noSync {
		return nil
	}
	return syncDir(filepath.Dir(final))
}

func (s *Disk) sync(f *os.File) error {
	if s.noSync {
		return nil
	}
	return f.Sync()
}

func (s *Disk) removeLocked(e *entry) {
	if e.elem != nil {
		s.lru.Remove(e.elem)
		e.elem = nil
	}
	delete(s.index, e.hash)
	s.used -= e.size
}

// evictLocked deletes least recently used unpinned blobs until size more
// bytes fit under the bound.
func (s *Disk) evictLocked(size int64) error {
	if s.max == 0 {
		return nil
	}
	for s.used+size > s.max {
		back := s.lru.Back()
		if back == nil {
			return fmt.Errorf("%w: %d bytes needed, %d of %d bytes used by pinned blobs", ErrFull, size, s.used, s.max)
		}
		e := back.Value.(*entry)
		s.removeLocked(e)
		if err := os.Remove(filepath.Join(s.dir, e.hash[:2], e.hash)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blob store: evicting: %w", err)
		}
	}
	return nil
}

// Path implements Linker. The blob may be evicted once Path returns unless
// the caller pinned it.
func (s *Disk) Path(ctx context.Context, d digest.Digest) (string, error) {
	if !s.has(d) {
		return "", &NotFoundError{Digest: d}
	}
	return BlobPath(s.dir, d), nil
}

// Pin implements Pinner. Pins are counted: a blob pinned twice stays pinned
// until both releases were called. release is idempotent.
func (s *Disk) Pin(ctx context.Context, ds []digest.Digest) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pinned := make([]*entry, 0, len(ds))
	for _, d := range ds {
		if d.IsEmpty() {
			continue
		}
		e := s.lookupLocked(d)
		if e == nil {
			s.unpinLocked(pinned)
			return nil, &NotFoundError{Digest: d}
		}
		e.pins++
		if e.elem != nil {
			s.lru.Remove(e.elem)
			e.elem = nil
		}
		pinned = append(pinned, e)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.unpinLocked(pinned)
			s.mu.Unlock()
		})
	}, nil
}

func (s *Disk) unpinLocked(es []*entry) {
	for _, e := range es {
		e.pins--
		if e.pins == 0 && s.index[e.hash] == e {
			e.elem = s.lru.PushFront(e)
		}
	}
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blob store: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blob store: fsync %s: %w", dir, err)
	}
	return nil
}

// Delete removes the blob d now, as eviction would; it refuses while d is
// pinned. Deleting an absent blob is not
// an error. Operators use it for blobs found corrupt; tests use it to
// simulate eviction.
func (s *Disk) Delete(ctx context.Context, d digest.Digest) error {
	if d.IsEmpty() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.index[d.Hash]
	if e == nil || e.size != d.Size {
		return nil
	}
	if e.pins > 0 {
		return fmt.Errorf("blob %s is pinned by %d user(s)", d, e.pins)
	}
	s.removeLocked(e)
	if err := os.Remove(BlobPath(s.dir, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	return nil
}
