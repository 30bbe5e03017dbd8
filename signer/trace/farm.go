package trace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

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
	f, err := os.Open(filepath.Join(string(c), d.Hash[:2], d.Hash))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrBlobMissing, d)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Read one byte more than expected, so a longer file is noticed.
	b, err := io.ReadAll(io.LimitReader(f, d.Size+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	return b, nil
}

// GitSources adapts a source.Repo to Sources.
func GitSources(r *source.Repo) Sources { return gitSources{r} }

type gitSources struct{ r *source.Repo }

func (g gitSources) At(ctx context.Context, commit string) (SourceTree, error) {
	return g.r.At(ctx, commit)
}
