// Package merkle reads REAPI Directory trees from a blob store, validating
// every node, and caches parsed directories by digest. Directory blobs are
// content-addressed, so a cached parse never goes stale.
package merkle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

// ErrInvalid is the category of errors for malformed trees.
var ErrInvalid = errors.New("invalid directory tree")

// MaxDirectoryBytes bounds one Directory blob.
const MaxDirectoryBytes = 16 << 20

// Limits bound a walk, so a hostile tree cannot exhaust the farm.
type Limits struct {
	MaxDirectories int // default 1,000,000
	MaxFiles       int // default 10,000,000
	MaxDepth       int // default 512
}

func (l Limits) withDefaults() Limits {
	if l.MaxDirectories <= 0 {
		l.MaxDirectories = 1_000_000
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = 10_000_000
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = 512
	}
	return l
}

// Reader reads and caches Directory messages.
type Reader struct {
	store blobstore.Store
	max   int

	mu    sync.Mutex
	cache map[digest.Digest]*repb.Directory
}

// NewReader returns a Reader over store caching up to maxCached directories
// (0 means 200,000).
func NewReader(store blobstore.Store, maxCached int) *Reader {
	if maxCached <= 0 {
		maxCached = 200_000
	}
	return &Reader{store: store, max: maxCached, cache: map[digest.Digest]*repb.Directory{}}
}

// Directory returns the parsed, validated Directory with digest d. A missing
// blob yields an error matching blobstore.ErrNotFound; a malformed one an
// error matching ErrInvalid. The result must not be modified.
func (r *Reader) Directory(ctx context.Context, d digest.Digest) (*repb.Directory, error) {
	r.mu.Lock()
	dir := r.cache[d]
	r.mu.Unlock()
	if dir != nil {
		return dir, nil
	}
	if d.Size > MaxDirectoryBytes {
		return nil, fmt.Errorf("%w: directory %s is larger than %d bytes", ErrInvalid, d, MaxDirectoryBytes)
	}
	rc, err := r.store.Get(ctx, d, 0)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(rc, d.Size+1))
	rc.Close()
	if err != nil {
		return nil, err
	}
	if got := digest.OfBytes(b); got != d {
		return nil, fmt.Errorf("%w: directory blob %s hashes to %s", ErrInvalid, d, got)
	}
	dir, err = Parse(b)
	if err != nil {
		return nil, fmt.Errorf("directory %s: %w", d, err)
	}
	r.mu.Lock()
	if len(r.cache) >= r.max {
		// Drop an arbitrary half: cheap and good enough for a content cache.
		n := 0
		for k := range r.cache {
			delete(r.cache, k)
			if n++; n >= r.max/2 {
				break
			}
		}
	}
	r.cache[d] = dir
	r.mu.Unlock()
	return dir, nil
}

// Parse decodes and validates one Directory message: names are single path
// components, sorted and unique across files, directories and symlinks, every
// digest is well formed, and symlink targets are relative and non-empty.
func Parse(b []byte) (*repb.Directory, error) {
	dir := &repb.Directory{}
	if err := proto.Unmarshal(b, dir); err != nil {
		return nil, fmt.Errorf("%w: cannot decode Directory: %v", ErrInvalid, err)
	}
	return dir, Validate(dir)
}

// Validate checks one Directory as Parse does.
func Validate(dir *repb.Directory) error {
	seen := map[string]bool{}
	check := func(kind, name string, prev *string) error {
		if err := CheckName(name); err != nil {
			return fmt.Errorf("%w: %s %q: %v", ErrInvalid, kind, name, err)
		}
		if *prev != "" && name <= *prev {
			return fmt.Errorf("%w: %s %q is not sorted after %q", ErrInvalid, kind, name, *prev)
		}
		*prev = name
		if seen[name] {
			return fmt.Errorf("%w: name %q appears twice", ErrInvalid, name)
		}
		seen[name] = true
		return nil
	}
	var prev string
	for _, f := range dir.GetFiles() {
		if err := check("file", f.GetName(), &prev); err != nil {
			return err
		}
		if _, err := digest.FromProto(f.GetDigest()); err != nil {
			return fmt.Errorf("%w: file %q: %v", ErrInvalid, f.GetName(), err)
		}
	}
	prev = ""
	for _, d := range dir.GetDirectories() {
		if err := check("directory", d.GetName(), &prev); err != nil {
			return err
		}
		if _, err := digest.FromProto(d.GetDigest()); err != nil {
			return fmt.Errorf("%w: directory %q: %v", ErrInvalid, d.GetName(), err)
		}
	}
	prev = ""
	for _, s := range dir.GetSymlinks() {
		if err := check("symlink", s.GetName(), &prev); err != nil {
			return err
		}
		if t := s.GetTarget(); t == "" || strings.HasPrefix(t, "/") || strings.Contains(t, "\x00") {
			return fmt.Errorf("%w: symlink %q has target %q; only relative targets are allowed", ErrInvalid, s.GetName(), t)
		}
	}
	return nil
}

// CheckName accepts a single path component.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case name == "." || name == "..":
		return errors.New("name is . or ..")
	case strings.ContainsAny(name, "/\x00"):
		return errors.New("name contains / or NUL")
	}
	return nil
}

// Inputs is what a tree holds: every directory digest and every distinct
// file digest.
type Inputs struct {
	Directories []digest.Digest
	Files       []digest.Digest
	Missing     []digest.Digest // directory blobs that are absent
}

// Collect walks the tree under root breadth-first, visiting each distinct
// directory once. Missing directory blobs are listed in Inputs.Missing rather
// than failing, so the caller can report every missing blob at once; a
// malformed tree fails.
func (r *Reader) Collect(ctx context.Context, root digest.Digest, lim Limits) (*Inputs, error) {
	lim = lim.withDefaults()
	in := &Inputs{}
	seenDir := digest.Set{}
	seenFile := digest.Set{}
	level := []digest.Digest{root}
	seenDir.Add(root)
	for depth := 0; len(level) > 0; depth++ {
		if depth > lim.MaxDepth {
			return nil, fmt.Errorf("%w: deeper than %d levels", ErrInvalid, lim.MaxDepth)
		}
		var next []digest.Digest
		for _, d := range level {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			in.Directories = append(in.Directories, d)
			dir, err := r.Directory(ctx, d)
			if errors.Is(err, blobstore.ErrNotFound) {
				in.Missing = append(in.Missing, d)
				continue
			}
			if err != nil {
				return nil, err
			}
			for _, f := range dir.GetFiles() {
				fd, _ := digest.FromProto(f.GetDigest())
				if !seenFile.Has(fd) {
					seenFile.Add(fd)
					in.Files = append(in.Files, fd)
				}
			}
			for _, c := range dir.GetDirectories() {
				cd, _ := digest.FromProto(c.GetDigest())
				if !seenDir.Has(cd) {
					seenDir.Add(cd)
					next = append(next, cd)
				}
			}
			if len(in.Directories)+len(next) > lim.MaxDirectories || len(in.Files) > lim.MaxFiles {
				return nil, fmt.Errorf("%w: more than %d directories or %d files", ErrInvalid, lim.MaxDirectories, lim.MaxFiles)
			}
		}
		level = next
	}
	return in, nil
}
