package reapi

import (
	"context"
	"errors"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/actioncache"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/internal/grpcstatus"
)

// DefaultMaxInlineBytes is how many bytes of stdout, stderr and output files
// together GetActionResult inlines at most, unless WithMaxInlineBytes says
// otherwise.
const DefaultMaxInlineBytes = 1 << 20

type actionCacheServer struct {
	repb.UnimplementedActionCacheServer
	r         Resolver
	maxInline int64
}

// ActionCacheOption configures NewActionCacheServer.
type ActionCacheOption func(*actionCacheServer)

// WithMaxInlineBytes bounds the total bytes GetActionResult inlines into one
// response when the client asks for inline_stdout, inline_stderr or
// inline_output_files. 0 disables inlining.
func WithMaxInlineBytes(n int64) ActionCacheOption {
	return func(s *actionCacheServer) {
		if n >= 0 {
			s.maxInline = n
		}
	}
}

// NewActionCacheServer serves the ActionCache service over the action caches
// of the instances r resolves. UpdateActionResult is allowed only for
// instances with ClientActionCacheWrites, and only for results whose every
// referenced blob is in the instance's CAS.
func NewActionCacheServer(r Resolver, opts ...ActionCacheOption) repb.ActionCacheServer {
	s := &actionCacheServer{r: r, maxInline: DefaultMaxInlineBytes}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *actionCacheServer) GetActionResult(ctx context.Context, req *repb.GetActionResultRequest) (*repb.ActionResult, error) {
	in, err := resolve(ctx, s.r, req.GetInstanceName(), req.GetDigestFunction())
	if err != nil {
		return nil, err
	}
	action, err := digest.FromProto(req.GetActionDigest())
	if err != nil {
		return nil, invalid("action_digest", err)
	}
	ar, err := in.ActionCache.Get(ctx, in.Name, action)
	if err != nil {
		return nil, grpcstatusFrom(err)
	}
	s.inline(ctx, in, req, ar)
	return ar, nil
}

// inline fills stdout_raw, stderr_raw and output file contents as asked, as
// long as the budget lasts. Blobs that cannot be read are not inlined; the
// client then fetches them by digest.
func (s *actionCacheServer) inline(ctx context.Context, in *Instance, req *repb.GetActionResultRequest, ar *repb.ActionResult) {
	budget := s.maxInline
	take := func(p *repb.Digest) []byte {
		d, err := digest.FromProto(p)
		if err != nil || d.Size > budget {
			return nil
		}
		b, err := readBlob(ctx, in, d)
		if err != nil {
			return nil
		}
		budget -= d.Size
		return b
	}
	if req.GetInlineStdout() && ar.GetStdoutDigest() != nil && len(ar.StdoutRaw) == 0 {
		ar.StdoutRaw = take(ar.GetStdoutDigest())
	}
	if req.GetInlineStderr() && ar.GetStderrDigest() != nil && len(ar.StderrRaw) == 0 {
		ar.StderrRaw = take(ar.GetStderrDigest())
	}
	want := map[string]bool{}
	for _, p := range req.GetInlineOutputFiles() {
		want[p] = true
	}
	for _, f := range ar.GetOutputFiles() {
		if want[f.GetPath()] && len(f.Contents) == 0 {
			f.Contents = take(f.GetDigest())
		}
	}
}

func (s *actionCacheServer) UpdateActionResult(ctx context.Context, req *repb.UpdateActionResultRequest) (*repb.ActionResult, error) {
	in, err := resolve(ctx, s.r, req.GetInstanceName(), req.GetDigestFunction())
	if err != nil {
		return nil, err
	}
	if !in.ClientActionCacheWrites {
		return nil, status.Errorf(codes.PermissionDenied,
			"instance %q does not accept ActionCache writes from clients; only results of actions this farm executed are cached (use remote execution, or run Bazel with --noremote_upload_local_results)", in.Name)
	}
	action, err := digest.FromProto(req.GetActionDigest())
	if err != nil {
		return nil, invalid("action_digest", err)
	}
	ar := req.GetActionResult()
	if ar == nil {
		return nil, status.Error(codes.InvalidArgument, "action_result is missing")
	}
	missing, err := actioncache.Missing(ctx, in.CAS, ar)
	if errors.Is(err, actioncache.ErrInvalid) {
		return nil, status.Errorf(codes.InvalidArgument, "action_result for %s: %v", action, err)
	}
	if err != nil {
		return nil, grpcstatusFrom(err)
	}
	if len(missing) > 0 {
		return nil, grpcstatus.Wrapf(grpcstatus.MissingBlobs(missing), "action_result for %s references blobs that are not in the CAS; upload them first", action)
	}
	// Inlined bytes whose blobs are in the CAS are not kept in the entry;
	// GetActionResult inlines them again when asked.
	ar = proto.Clone(ar).(*repb.ActionResult)
	if ar.GetStdoutDigest() != nil {
		ar.StdoutRaw = nil
	}
	if ar.GetStderrDigest() != nil {
		ar.StderrRaw = nil
	}
	for _, f := range ar.GetOutputFiles() {
		f.Contents = nil
	}
	if err := in.ActionCache.Put(ctx, in.Name, action, ar); err != nil {
		return nil, grpcstatusFrom(fmt.Errorf("storing the result of %s: %w", action, err))
	}
	return ar, nil
}
