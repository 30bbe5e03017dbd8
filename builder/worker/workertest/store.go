// Package workertest holds small blob stores for tests and benchmarks of the
// worker: DirStore keeps blobs as root-owned 0444 files (like the farm's disk
// CAS) and offers Linker and FilePutter; MemStore is a plain Store.
package workertest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

// DirStore stores each blob as the file <dir>/<hash>, mode 0444.
type DirStore struct{ Dir string }

var (
	_ blobstore.Store      = (*DirStore)(nil)
	_ blobstore.Linker     = (*DirStore)(nil)
	_ blobstore.FilePutter = (*DirStore)(nil)
)

func (s *DirStore) path(d digest.Digest) string { return filepath.Join(s.Dir, d.Hash) }

// Get implements blobstore.Store.
func (s *DirStore) Get(_ context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if d.IsEmpty() {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	f, err := os.Open(s.path(d))
	if err != nil {
		return nil, &blobstore.NotFoundError{Digest: d}
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Put implements blobstore.Store.
func (s *DirStore) Put(_ context.Context, d digest.Digest, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if digest.OfBytes(b) != d {
		return blobstore.ErrDigestMismatch
	}
	tmp, err := os.CreateTemp(s.Dir, "tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.path(d))
}

// FindMissing implements blobstore.Store.
func (s *DirStore) FindMissing(_ context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	var out []digest.Digest
	for _, d := range ds {
		if _, err := os.Stat(s.path(d)); err != nil && !d.IsEmpty() {
			out = append(out, d)
		}
	}
	return out, nil
}

// Path implements blobstore.Linker.
func (s *DirStore) Path(_ context.Context, d digest.Digest) (string, error) {
	p := s.path(d)
	if _, err := os.Stat(p); err != nil {
		return "", &blobstore.NotFoundError{Digest: d}
	}
	return p, nil
}

// PutFile implements blobstore.FilePutter: it checks the content and
// renames the file into place.
func (s *DirStore) PutFile(_ context.Context, d digest.Digest, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	got, err := digest.OfReader(f)
	f.Close()
	if err != nil {
		return err
	}
	if got != d {
		return fmt.Errorf("%w: %s has %s", blobstore.ErrDigestMismatch, path, got)
	}
	if err := os.Chmod(path, 0o444); err != nil {
		return err
	}
	return os.Rename(path, s.path(d))
}

// MemStore is an in-memory Store with no extensions.
type MemStore struct {
	mu sync.Mutex
	m  map[digest.Digest][]byte
}

// Get implements blobstore.Store.
func (s *MemStore) Get(_ context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[d]
	if !ok && !d.IsEmpty() {
		return nil, &blobstore.NotFoundError{Digest: d}
	}
	return io.NopCloser(bytes.NewReader(b[offset:])), nil
}

// Put implements blobstore.Store.
func (s *MemStore) Put(_ context.Context, d digest.Digest, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if digest.OfBytes(b) != d {
		return blobstore.ErrDigestMismatch
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[digest.Digest][]byte{}
	}
	s.m[d] = b
	return nil
}

// FindMissing implements blobstore.Store.
func (s *MemStore) FindMissing(_ context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []digest.Digest
	for _, d := range ds {
		if _, ok := s.m[d]; !ok && !d.IsEmpty() {
			out = append(out, d)
		}
	}
	return out, nil
}

// PutBytes stores b in s and returns its digest; it panics on error.
func PutBytes(s blobstore.Store, b []byte) digest.Digest {
	d := digest.OfBytes(b)
	if err := s.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		panic(err)
	}
	return d
}

// PutMessage stores the deterministic encoding of m and returns its digest.
func PutMessage(s blobstore.Store, m proto.Message) digest.Digest {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic(err)
	}
	return PutBytes(s, b)
}

// File is one file of a Tree built by PutTree.
type File struct {
	Content    string
	Executable bool
	Symlink    string // if set, a symlink with this target instead of a file
}

// PutTree stores files (slash-separated relative paths) as a Directory tree
// and returns the root Directory's digest.
func PutTree(s blobstore.Store, files map[string]File) digest.Digest {
	type node struct {
		files map[string]File
		dirs  map[string]*node
	}
	newNode := func() *node { return &node{files: map[string]File{}, dirs: map[string]*node{}} }
	root := newNode()
	for p, f := range files {
		n := root
		parts := splitPath(p)
		for _, c := range parts[:len(parts)-1] {
			if n.dirs[c] == nil {
				n.dirs[c] = newNode()
			}
			n = n.dirs[c]
		}
		n.files[parts[len(parts)-1]] = f
	}
	var put func(n *node) digest.Digest
	put = func(n *node) digest.Digest {
		d := &repb.Directory{}
		for _, name := range sortedKeys(n.files) {
			f := n.files[name]
			if f.Symlink != "" {
				d.Symlinks = append(d.Symlinks, &repb.SymlinkNode{Name: name, Target: f.Symlink})
				continue
			}
			d.Files = append(d.Files, &repb.FileNode{Name: name, Digest: PutBytes(s, []byte(f.Content)).ToProto(), IsExecutable: f.Executable})
		}
		for _, name := range sortedKeys(n.dirs) {
			d.Directories = append(d.Directories, &repb.DirectoryNode{Name: name, Digest: put(n.dirs[name]).ToProto()})
		}
		return PutMessage(s, d)
	}
	return put(root)
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
