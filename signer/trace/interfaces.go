// Package trace follows artifacts back through the farm's records to their
// sources: the execution log says which action produced a blob, the CAS
// holds that action's Action, Command and input tree, and every input file is
// classified as generated (produced by another logged action: traced in
// turn), source (checked against the claimed git commit), third-party
// (external/<repo>: checked against an allowlist) or client-written (under
// bazel-out/ but produced by no logged action: disclosed).
//
// The tracer reads the farm through the small interfaces below, so a records
// API served over the network can replace the local data directory
// (OpenFarm) without touching the tracing logic. It trusts nothing it reads:
// every blob is re-hashed, and the log's chain is verified up to every record
// it uses.
package trace

import (
	"context"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/execlog"
)

// Log is the read side of the execution log. *execlog.Reader implements it.
type Log interface {
	// Refresh loads records appended since the last call.
	Refresh() error
	// Lookup returns the records with an output whose digest is d (output
	// files, and output directories by Tree and root Directory digest).
	Lookup(d digest.Digest) []execlog.Record
	// Verify checks the hash chain from the first record through record seq
	// against the log's storage.
	Verify(seq uint64) error
}

// CAS reads blobs. The tracer re-hashes everything it gets, so an
// implementation need not verify.
type CAS interface {
	// Get returns the content of blob d. It fails if d is absent or larger
	// than limit bytes.
	Get(ctx context.Context, d digest.Digest, limit int64) ([]byte, error)
}

// Sources checks source files against a repository.
type Sources interface {
	// At returns a checker for commit, failing if the commit is not
	// submitted (reachable from the protected branch).
	At(ctx context.Context, commit string) (SourceTree, error)
}

// SourceTree checks files of one commit.
type SourceTree interface {
	// Check fails unless the commit holds a file at path with digest d.
	Check(ctx context.Context, path string, d digest.Digest) error
	Close() error
}

// BranchReporter is implemented by a SourceTree that verified its commit
// against a protected branch; the trace records that branch.
type BranchReporter interface {
	// ProtectedBranch returns the branch's short name, e.g. "main".
	ProtectedBranch() string
}

// RepositoryReporter is implemented by a SourceTree that knows the name of
// the repository it checks files against; the trace records it as the
// repository the sources were verified in.
type RepositoryReporter interface {
	// SourceRepository returns the repository's URI.
	SourceRepository() string
}

var _ Log = (*execlog.Reader)(nil)
