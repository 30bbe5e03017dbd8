package actioncache

import (
	"context"
	"errors"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

// MaxTreeBytes bounds the size of an output directory's Tree blob that
// Referenced reads.
const MaxTreeBytes = 64 << 20

// completeOnly serves a result only while the CAS holds every blob it
// references. Without it, an evicted output would make Bazel fail the build
// ("failed to fetch output") instead of re-executing the action; with it the
// client sees NOT_FOUND and executes again.
type completeOnly struct {
	Cache
	cas blobstore.Store
}

// NewCompleteOnly wraps base so that Get answers a *NotFoundError (listing
// what is missing) for a stored result that references a blob cas lacks:
// an output file, stdout or stderr, an output directory's Tree blob or root
// Directory, or any file inside such a Tree.
func NewCompleteOnly(base Cache, cas blobstore.Store) Cache {
	return &completeOnly{Cache: base, cas: cas}
}

func (c *completeOnly) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	ar, err := c.Cache.Get(ctx, instance, action)
	if err != nil {
		return nil, err
	}
	missing, err := Missing(ctx, c.cas, ar)
	if errors.Is(err, ErrInvalid) {
		return nil, &NotFoundError{Instance: instance, Action: action}
	}
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, &NotFoundError{Instance: instance, Action: action, Missing: missing}
	}
	return ar, nil
}

// Missing returns the blobs ar references (see Referenced) that cas lacks,
// in a stable order. A Tree blob that is missing is reported itself; the
// files inside it cannot be known then.
func Missing(ctx context.Context, cas blobstore.Store, ar *repb.ActionResult) ([]digest.Digest, error) {
	direct, trees, err := direct(ar)
	if err != nil {
		return nil, err
	}
	missing, err := cas.FindMissing(ctx, direct)
	if err != nil {
		return nil, err
	}
	absent := digest.Set{}
	for _, d := range missing {
		absent.Add(d)
	}
	var inner []digest.Digest
	for _, t := range trees {
		if absent.Has(t) {
			continue
		}
		files, err := treeFiles(ctx, cas, t)
		if errors.Is(err, blobstore.ErrNotFound) {
			absent.Add(t) // evicted between FindMissing and Get
			continue
		}
		if err != nil {
			return nil, err
		}
		inner = append(inner, files...)
	}
	if len(inner) > 0 {
		m, err := cas.FindMissing(ctx, inner)
		if err != nil {
			return nil, err
		}
		for _, d := range m {
			absent.Add(d)
		}
	}
	return absent.Sorted(), nil
}

// Referenced returns every blob ar references: its output files, stdout and
// stderr digests, output directories' Tree blobs and root Directory digests,
// and every file in those Trees (read from cas). Digests are deduplicated
// and sorted.
func Referenced(ctx context.Context, cas blobstore.Store, ar *repb.ActionResult) ([]digest.Digest, error) {
	direct, trees, err := direct(ar)
	if err != nil {
		return nil, err
	}
	all := digest.Set{}
	for _, d := range direct {
		all.Add(d)
	}
	for _, t := range trees {
		files, err := treeFiles(ctx, cas, t)
		if err != nil {
			return nil, err
		}
		for _, d := range files {
			all.Add(d)
		}
	}
	return all.Sorted(), nil
}

// direct validates the digests that ar names itself and returns them,
// together with the Tree digests (which are among them).
func direct(ar *repb.ActionResult) (all, trees []digest.Digest, err error) {
	add := func(what string, p *repb.Digest, optional bool) (digest.Digest, error) {
		if p == nil && optional {
			return digest.Digest{}, nil
		}
		d, err := digest.FromProto(p)
		if err != nil {
			return d, fmt.Errorf("%w: %s: %v", ErrInvalid, what, err)
		}
		all = append(all, d)
		return d, nil
	}
	for _, f := range ar.GetOutputFiles() {
		if _, err := add(fmt.Sprintf("output file %q", f.GetPath()), f.GetDigest(), false); err != nil {
			return nil, nil, err
		}
	}
	for _, dir := range ar.GetOutputDirectories() {
		t, err := add(fmt.Sprintf("tree of output directory %q", dir.GetPath()), dir.GetTreeDigest(), false)
		if err != nil {
			return nil, nil, err
		}
		trees = append(trees, t)
		if _, err := add(fmt.Sprintf("root directory of output directory %q", dir.GetPath()), dir.GetRootDirectoryDigest(), true); err != nil {
			return nil, nil, err
		}
	}
	if _, err := add("stdout", ar.GetStdoutDigest(), true); err != nil {
		return nil, nil, err
	}
	if _, err := add("stderr", ar.GetStderrDigest(), true); err != nil {
		return nil, nil, err
	}
	return all, trees, nil
}

// treeFiles reads the Tree blob t and returns the digests of all files in it.
func treeFiles(ctx context.Context, cas blobstore.Store, t digest.Digest) ([]digest.Digest, error) {
	if t.Size > MaxTreeBytes {
		return nil, fmt.Errorf("%w: tree %s is larger than %d bytes", ErrInvalid, t, MaxTreeBytes)
	}
	rc, err := cas.Get(ctx, t, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxTreeBytes+1))
	if err != nil {
		return nil, err
	}
	tree := &repb.Tree{}
	if err := proto.Unmarshal(b, tree); err != nil {
		return nil, fmt.Errorf("%w: tree %s does not parse: %v", ErrInvalid, t, err)
	}
	var out []digest.Digest
	for _, dir := range append([]*repb.Directory{tree.GetRoot()}, tree.GetChildren()...) {
		for _, f := range dir.GetFiles() {
			d, err := digest.FromProto(f.GetDigest())
			if err != nil {
				return nil, fmt.Errorf("%w: file %q in tree %s: %v", ErrInvalid, f.GetName(), t, err)
			}
			out = append(out, d)
		}
	}
	return out, nil
}
