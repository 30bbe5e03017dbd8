package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

// materializer builds one action's input root.
type materializer struct {
	w       *Worker
	ctx     context.Context
	dirs    map[digest.Digest]*repb.Directory
	root    string // host directory of the input root
	nodes   int
	missing digest.Set
}

// build creates the tree of directory d at rel (relative to m.root).
func (m *materializer) build(d digest.Digest, rel string) error {
	dir, ok := m.dirs[d]
	if !ok {
		return nil // missing; reported by the caller
	}
	m.nodes += len(dir.Files) + len(dir.Directories) + len(dir.Symlinks)
	if m.nodes > m.w.opts.maxInputNodes {
		return fmt.Errorf("%w: more than %d files, directories and symlinks", ErrInvalidTree, m.w.opts.maxInputNodes)
	}
	host := m.root
	if rel != "" {
		host = filepath.Join(m.root, rel)
	}
	for _, f := range dir.Files {
		fd, _ := digest.FromProto(f.Digest)
		src, err := m.w.source(m.ctx, fd, f.IsExecutable)
		if errors.Is(err, blobstore.ErrNotFound) {
			m.missing.Add(fd)
			continue
		}
		if err != nil {
			return fmt.Errorf("input %s: %w", joinRel(rel, f.Name), err)
		}
		err = os.Link(src, filepath.Join(host, f.Name))
		if isCrossDevice(err) && m.w.linkable.Swap(false) {
			// The store's files are on another file system: use the cache.
			if src, err = m.w.source(m.ctx, fd, f.IsExecutable); err == nil {
				err = os.Link(src, filepath.Join(host, f.Name))
			}
		}
		if err != nil {
			return fmt.Errorf("linking input %s: %w", joinRel(rel, f.Name), err)
		}
	}
	for _, s := range dir.Symlinks {
		if err := CheckSymlinkTarget(rel, s.Target); err != nil {
			return fmt.Errorf("symlink %s: %w", joinRel(rel, s.Name), err)
		}
		if err := os.Symlink(s.Target, filepath.Join(host, s.Name)); err != nil {
			return fmt.Errorf("creating symlink %s: %w", joinRel(rel, s.Name), err)
		}
	}
	for _, c := range dir.Directories {
		if err := os.Mkdir(filepath.Join(host, c.Name), 0o755); err != nil {
			return fmt.Errorf("creating input directory: %w", err)
		}
		cd, _ := digest.FromProto(c.Digest)
		if err := m.build(cd, joinRel(rel, c.Name)); err != nil {
			return err
		}
	}
	return nil
}

// source returns a host file with d's content, owned by root and read-only
// (0444, or 0555 when executable), that may be hard-linked into an input
// root: the store's own file when it is a Linker on the same file system,
// else a file of the worker's local cache. CAS files are never chmod'ed.
func (w *Worker) source(ctx context.Context, d digest.Digest, executable bool) (string, error) {
	if !executable && w.linker != nil && w.linkable.Load() {
		p, err := w.linker.Path(ctx, d)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, blobstore.ErrNotFound) || !d.IsEmpty() {
			return "", err
		}
	}
	name := d.Hash
	mode := os.FileMode(0o444)
	if executable {
		name += "x"
		mode = 0o555
	}
	p := filepath.Join(w.cacheDir, d.Hash[:2], name)
	if _, err := os.Lstat(p); err == nil {
		return p, nil
	}
	if err := w.fill(ctx, d, p, mode); err != nil {
		return "", err
	}
	return p, nil
}

var tmpSeq atomic.Uint64

// fill writes d's content to p (atomically, with mode), from the store.
func (w *Worker) fill(ctx context.Context, d digest.Digest, p string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp := p + ".tmp" + strconv.FormatUint(tmpSeq.Add(1), 10)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	err = copyBlob(ctx, w.store, w.linker, d, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// copyBlob copies d's content into f and checks it.
func copyBlob(ctx context.Context, s blobstore.Store, l blobstore.Linker, d digest.Digest, f *os.File) error {
	if d.IsEmpty() {
		return nil
	}
	var r io.ReadCloser
	var err error
	if l != nil {
		var p string
		if p, err = l.Path(ctx, d); err == nil {
			r, err = os.Open(p)
		}
	}
	if l == nil || err != nil {
		if r, err = s.Get(ctx, d, 0); err != nil {
			return err
		}
	}
	defer r.Close()
	h := digest.NewHasher()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, d.Size+1)); err != nil {
		return err
	}
	if got := h.Digest(); got != d {
		return fmt.Errorf("blob %s from the store has content %s", d, got)
	}
	return nil
}

// isCrossDevice reports whether err is EXDEV (hard link across file systems).
func isCrossDevice(err error) bool { return errors.Is(err, syscall.EXDEV) }
