package trace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/execlog"
	"github.com/hallmark-build/hallmark/signer/source"
)

// Farm is a builder data directory opened read-only: its execution log
// (DATA/log) and CAS (DATA/cas/<first 2 hex>/<hash>).
type Farm struct {
	Log *execlog.Reader
	CAS DirCAS
}

// OpenFarm opens the builder data directory dataDir for reading. It never
// writes there.
func OpenFarm(dataDir string) (*Farm, error) {
	r, err := execlog.OpenReadOnly(filepath.Join(dataDir, "log"))
	if err != nil {
		return nil, fmt.Errorf("trace: open the farm's execution log: %w", err)
	}
	cas := filepath.Join(dataDir, "cas")
	if st, err := os.Stat(cas); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("trace: the farm's CAS directory %s is missing", cas)
	}
	return &Farm{Log: r, CAS: DirCAS(cas)}, nil
}

// DirCAS reads blobs from a builder's disk CAS directory, where blob d is
// the file <dir>/<d.Hash[:2]>/<d.Hash>.
type DirCAS string

// ErrBlobMissing is returned (wrapped) by DirCAS.Get for an absent blob.
var ErrBlobMissing = errors.New("blob is not in the CAS")

// Get reads the blob d.
func (c DirCAS) Get(ctx context.Context, d digest.Digest, limit int64) ([]byte, error) {
	if d.Size > limit {
		return nil, fmt.Errorf("blob %s is larger than the %d bytes allowed here", d, limit)
	}
	if d.Size == 0 {
		return nil, nil
	}
	if len(d.Hash) < 2 {
		return nil, fmt.Errorf("blob %s: invalid digest", d)
	}
	// Raw system calls: open, one read, close. (os.Open would also try to
	// register the file with the poller, and a 5,000-action trace reads tens
	// of thousands of blobs.)
	p := filepath.Join(string(c), d.Hash[:2], d.Hash)
	fd, err := openRead(p)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("%w: %s", ErrBlobMissing, d)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, &os.PathError{Op: "open", Path: p, Err: err})
	}
	defer unix.Close(fd)
	// Read at most the blob's size: the caller re-hashes exactly these bytes,
	// so trailing bytes in the file cannot change what is used, and a short
	// file fails the hash.
	b := make([]byte, d.Size)
	n := 0
	for n < len(b) {
		m, err := unix.Read(fd, b[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("blob %s: %w", d, &os.PathError{Op: "read", Path: p, Err: err})
		}
		if m == 0 {
			break
		}
		n += m
	}
	return b[:n], nil
}

func openRead(p string) (int, error) {
	for {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// GitSources adapts a source.Repo to Sources. Traces through it record the
// protected branch and, as the source repository, the repository's location
// as a file URL ("file:///abs/dir"); NamedGitSources names it instead.
func GitSources(r *source.Repo) Sources {
	dir := r.Dir()
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return gitSources{r, "file://" + filepath.ToSlash(dir)}
}

// NamedGitSources is GitSources recording uri (e.g. the canonical
// https://git.example.com/mono of a local mirror) as the source repository.
func NamedGitSources(r *source.Repo, uri string) Sources { return gitSources{r, uri} }

type gitSources struct {
	r   *source.Repo
	uri string
}

func (g gitSources) At(ctx context.Context, commit string) (SourceTree, error) {
	t, err := g.r.At(ctx, commit)
	if err != nil {
		return nil, err
	}
	return branchTree{t, strings.TrimPrefix(g.r.Branch(), "refs/heads/"), g.uri}, nil
}

// branchTree is a commit's tree that At verified to be reachable from the
// protected branch.
type branchTree struct {
	*source.Tree
	branch, uri string
}

func (b branchTree) ProtectedBranch() string  { return b.branch }
func (b branchTree) SourceRepository() string { return b.uri }
