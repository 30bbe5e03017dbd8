package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/merkle"
)

// ErrInvalidTree is the category of errors for malformed input root trees.
// It is merkle.ErrInvalid: one Directory validator serves the Execution
// service and the worker.
var ErrInvalidTree = merkle.ErrInvalid

// maxDirectoryBytes bounds one Directory message.
const maxDirectoryBytes = 16 << 20

// CheckSymlinkTarget checks that a symlink in directory dir (relative to the
// input root, "" for the root) with the given target stays inside the input
// root when resolved lexically.
func CheckSymlinkTarget(dir, target string) error {
	if target == "" || strings.HasPrefix(target, "/") {
		return fmt.Errorf("%w: symlink target %q in %q is absolute or empty", ErrInvalidTree, target, dir)
	}
	depth := 0
	if dir != "" {
		depth = strings.Count(dir, "/") + 1
	}
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return fmt.Errorf("%w: symlink target %q in %q escapes the input root", ErrInvalidTree, target, dir)
			}
		default:
			depth++
		}
	}
	return nil
}

// ParseDirectory decodes and validates a Directory blob that must have digest d.
func ParseDirectory(d digest.Digest, blob []byte) (*repb.Directory, error) {
	if got := digest.OfBytes(blob); got != d {
		return nil, fmt.Errorf("%w: directory blob %s hashes to %s", ErrInvalidTree, d, got)
	}
	dir, err := merkle.Parse(blob)
	if err != nil {
		return nil, fmt.Errorf("directory %s: %w", d, err)
	}
	return dir, nil
}

// dirCache remembers parsed, validated Directory messages by digest.
type dirCache struct {
	mu  sync.Mutex
	m   map[digest.Digest]*repb.Directory
	max int
}

func (c *dirCache) get(d digest.Digest) *repb.Directory {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[d]
}

func (c *dirCache) put(d digest.Digest, dir *repb.Directory) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[digest.Digest]*repb.Directory)
	}
	c.m[d] = dir
}

// fetchTree loads every Directory of the tree rooted at root. Missing
// Directory blobs are returned in missing (not as an error).
func (w *Worker) fetchTree(ctx context.Context, root digest.Digest) (dirs map[digest.Digest]*repb.Directory, missing []digest.Digest, err error) {
	dirs = make(map[digest.Digest]*repb.Directory)
	queue := []digest.Digest{root}
	seenMissing := digest.Set{}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if _, ok := dirs[d]; ok || seenMissing.Has(d) {
			continue
		}
		dir := w.dirs.get(d)
		if dir == nil {
			if d.Size > maxDirectoryBytes {
				return nil, nil, fmt.Errorf("%w: directory %s is larger than %d bytes", ErrInvalidTree, d, maxDirectoryBytes)
			}
			blob, err := readBlob(ctx, w.store, d)
			if errors.Is(err, blobstore.ErrNotFound) {
				seenMissing.Add(d)
				missing = append(missing, d)
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("reading directory %s: %w", d, err)
			}
			if dir, err = ParseDirectory(d, blob); err != nil {
				return nil, nil, err
			}
			w.dirs.put(d, dir)
		}
		dirs[d] = dir
		if len(dirs) > w.opts.maxInputNodes {
			return nil, nil, fmt.Errorf("%w: more than %d directories", ErrInvalidTree, w.opts.maxInputNodes)
		}
		for _, c := range dir.GetDirectories() {
			cd, _ := digest.FromProto(c.GetDigest()) // checked by CheckDirectory
			queue = append(queue, cd)
		}
	}
	return dirs, missing, nil
}

func readBlob(ctx context.Context, s blobstore.Store, d digest.Digest) ([]byte, error) {
	if d.IsEmpty() {
		return nil, nil
	}
	r, err := s.Get(ctx, d, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, d.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != d.Size {
		return nil, fmt.Errorf("blob %s has %d bytes", d, len(b))
	}
	return b, nil
}

// joinRel joins relative paths where "" is the root.
func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return path.Join(dir, name)
}
