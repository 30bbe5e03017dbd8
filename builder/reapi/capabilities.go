package reapi

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/bazelbuild/remote-apis/build/bazel/semver"
)

// MaxBatchTotalSizeBytes is the largest total blob size a BatchUpdateBlobs or
// BatchReadBlobs request may carry (announced in Capabilities).
const MaxBatchTotalSizeBytes = 4 << 20

// LowAPIVersion and HighAPIVersion bound the REAPI versions the farm speaks.
// 2.0 clients (Bazel 4: output_files/output_directories) and 2.1+ clients
// (Bazel 6-8: output_paths) are both served; nothing the farm relies on
// changed after 2.3.
var (
	LowAPIVersion  = &semver.SemVer{Major: 2, Minor: 0}
	HighAPIVersion = &semver.SemVer{Major: 2, Minor: 3}
)

type capabilitiesServer struct {
	repb.UnimplementedCapabilitiesServer
	r           Resolver
	execEnabled bool
	maxBlob     int64
}

// CapabilitiesOption configures NewCapabilitiesServer.
type CapabilitiesOption func(*capabilitiesServer)

// WithExecution announces that the Execution service is enabled. The
// default is a cache-only server.
func WithExecution(enabled bool) CapabilitiesOption {
	return func(s *capabilitiesServer) { s.execEnabled = enabled }
}

// WithAnnouncedMaxBlobBytes announces the largest blob the CAS accepts
// (max_cas_blob_size_bytes). The default, 0, announces no limit.
func WithAnnouncedMaxBlobBytes(n int64) CapabilitiesOption {
	return func(s *capabilitiesServer) { s.maxBlob = n }
}

// NewCapabilitiesServer answers GetCapabilities for the instances r serves:
// SHA-256 only, no compression, absolute symlinks disallowed, ActionCache
// updates as the instance allows them, API versions LowAPIVersion to
// HighAPIVersion.
func NewCapabilitiesServer(r Resolver, opts ...CapabilitiesOption) repb.CapabilitiesServer {
	s := &capabilitiesServer{r: r}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *capabilitiesServer) GetCapabilities(ctx context.Context, req *repb.GetCapabilitiesRequest) (*repb.ServerCapabilities, error) {
	in, err := s.r.Resolve(ctx, req.GetInstanceName())
	if err != nil {
		return nil, err
	}
	sha := []repb.DigestFunction_Value{repb.DigestFunction_SHA256}
	return &repb.ServerCapabilities{
		CacheCapabilities: &repb.CacheCapabilities{
			DigestFunctions: sha,
			ActionCacheUpdateCapabilities: &repb.ActionCacheUpdateCapabilities{
				UpdateEnabled: in.ClientActionCacheWrites,
			},
			MaxBatchTotalSizeBytes:      MaxBatchTotalSizeBytes,
			SymlinkAbsolutePathStrategy: repb.SymlinkAbsolutePathStrategy_DISALLOWED,
			MaxCasBlobSizeBytes:         s.maxBlob,
		},
		ExecutionCapabilities: &repb.ExecutionCapabilities{
			DigestFunction:  repb.DigestFunction_SHA256,
			DigestFunctions: sha,
			ExecEnabled:     s.execEnabled,
		},
		LowApiVersion:  LowAPIVersion,
		HighApiVersion: HighAPIVersion,
	}, nil
}
