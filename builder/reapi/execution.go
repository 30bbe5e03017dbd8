package reapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/merkle"
	"github.com/hallmark-build/hallmark/builder/scheduler"
	"github.com/hallmark-build/hallmark/internal/grpcstatus"
)

// maxActionBytes bounds the Action and Command messages the server reads.
const maxActionBytes = 4 << 20

// requestMetadataKey is the gRPC metadata header Bazel sends its
// RequestMetadata in.
const requestMetadataKey = "build.bazel.remote.execution.v2.requestmetadata-bin"

// TaskAdmitter decides, per request, the tenant and pool of a task and may
// refuse it (quotas, platform properties). The default admits everything
// as tenant "".
type TaskAdmitter func(ctx context.Context, t *scheduler.Task) error

// ExecutionOption configures the Execution service.
type ExecutionOption func(*executionServer)

// WithTaskAdmitter sets the per-request admission hook.
func WithTaskAdmitter(a TaskAdmitter) ExecutionOption {
	return func(s *executionServer) { s.admit = a }
}

// WithMaxTimeout caps the timeout an action may ask for (default 1 hour);
// actions that ask for more are refused with INVALID_ARGUMENT.
func WithMaxTimeout(d time.Duration) ExecutionOption {
	return func(s *executionServer) { s.maxTimeout = d }
}

// WithCacheHitHook is called for each Execute answered from the ActionCache.
func WithCacheHitHook(f func()) ExecutionOption {
	return func(s *executionServer) { s.onHit = f }
}

type executionServer struct {
	repb.UnimplementedExecutionServer
	lrpb.UnimplementedOperationsServer

	resolver   Resolver
	sched      *scheduler.Scheduler
	admit      TaskAdmitter
	maxTimeout time.Duration
	onHit      func()

	mu    sync.Mutex
	trees map[*Instance]*merkle.Reader
}

// ExecutionServer is the REAPI Execution service plus the
// google.longrunning.Operations calls that make sense for it.
type ExecutionServer interface {
	repb.ExecutionServer
	lrpb.OperationsServer
}

// NewExecutionServer returns the Execution service. It resolves each
// request's instance with r, validates the action against that instance's
// CAS, answers from its ActionCache when it can, and otherwise queues the
// action on sched and streams its progress.
func NewExecutionServer(r Resolver, sched *scheduler.Scheduler, opts ...ExecutionOption) ExecutionServer {
	s := &executionServer{
		resolver:   r,
		sched:      sched,
		maxTimeout: time.Hour,
		onHit:      func() {},
		admit:      func(context.Context, *scheduler.Task) error { return nil },
		trees:      map[*Instance]*merkle.Reader{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Execute implements repb.ExecutionServer.
func (s *executionServer) Execute(req *repb.ExecuteRequest, stream repb.Execution_ExecuteServer) error {
	ctx := stream.Context()
	inst, err := resolve(ctx, s.resolver, req.GetInstanceName(), req.GetDigestFunction())
	if err != nil {
		return err
	}
	ad, err := digest.FromProto(req.GetActionDigest())
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "action_digest: %v", err)
	}
	task, inputs, err := s.load(ctx, inst, ad)
	if err != nil {
		return err
	}
	task.Metadata = requestMetadata(ctx)
	task.DoNotCache = task.Action.GetDoNotCache()

	if !req.GetSkipCacheLookup() && !task.DoNotCache {
		res, err := inst.ActionCache.Get(ctx, req.GetInstanceName(), ad)
		switch {
		case err == nil:
			s.onHit()
			return stream.Send(completedOperation("operations/cached/"+ad.Hash, ad, &repb.ExecuteResponse{Result: res, CachedResult: true}))
		case grpcstatus.Code(err) != codes.NotFound:
			return grpcstatus.Wrapf(err, "ActionCache lookup for %s", ad)
		}
	}
	if err := s.admit(ctx, task); err != nil {
		return err
	}

	var release func()
	if p, ok := blobstore.As[blobstore.Pinner](inst.CAS); ok {
		release, err = p.Pin(ctx, inputs)
		if errors.Is(err, blobstore.ErrNotFound) {
			// Evicted between the check and the pin: let the client re-upload.
			missing, ferr := inst.CAS.FindMissing(ctx, inputs)
			if ferr == nil && len(missing) > 0 {
				return grpcstatus.MissingBlobs(missing)
			}
		}
		if err != nil {
			return grpcstatus.Wrapf(err, "pinning the inputs of %s", ad)
		}
	}
	op, merged, err := s.sched.Submit(task)
	if err != nil {
		if release != nil {
			release()
		}
		return status.Errorf(codes.Unavailable, "%v", err)
	}
	if release != nil {
		if merged {
			release()
		} else {
			go func() { waitDone(op); release() }()
		}
	}
	return s.stream(ctx, op, stream)
}

// WaitExecution implements repb.ExecutionServer.
func (s *executionServer) WaitExecution(req *repb.WaitExecutionRequest, stream repb.Execution_WaitExecutionServer) error {
	op, err := s.lookup(stream.Context(), req.GetName())
	if err != nil {
		return err
	}
	return s.stream(stream.Context(), op, stream)
}

func (s *executionServer) lookup(ctx context.Context, name string) (*scheduler.Operation, error) {
	op, err := s.sched.Lookup(name)
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "operation %q is unknown (finished long ago, or the farm restarted): execute the action again", name)
	}
	if _, err := s.resolver.Resolve(ctx, op.Task.Instance); err != nil {
		// Another tenant's operation looks exactly like an unknown one.
		return nil, status.Errorf(codes.NotFound, "operation %q is unknown (finished long ago, or the farm restarted): execute the action again", name)
	}
	return op, nil
}

// GetOperation implements lrpb.OperationsServer.
func (s *executionServer) GetOperation(ctx context.Context, req *lrpb.GetOperationRequest) (*lrpb.Operation, error) {
	op, err := s.lookup(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	snap, _ := op.Watch()
	return toOperation(op, snap), nil
}

// CancelOperation implements lrpb.OperationsServer.
func (s *executionServer) CancelOperation(ctx context.Context, req *lrpb.CancelOperationRequest) (*emptypb.Empty, error) {
	if _, err := s.lookup(ctx, req.GetName()); err != nil {
		return nil, err
	}
	if err := s.sched.Cancel(req.GetName()); err != nil {
		return nil, status.Errorf(codes.NotFound, "%v", err)
	}
	return &emptypb.Empty{}, nil
}

// WaitOperation implements lrpb.OperationsServer.
func (s *executionServer) WaitOperation(ctx context.Context, req *lrpb.WaitOperationRequest) (*lrpb.Operation, error) {
	op, err := s.lookup(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if t := req.GetTimeout(); t != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.AsDuration())
		defer cancel()
	}
	for {
		snap, ch := op.Watch()
		if snap.Stage == repb.ExecutionStage_COMPLETED {
			return toOperation(op, snap), nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return toOperation(op, snap), nil
		}
	}
}

type opSender interface {
	Send(*lrpb.Operation) error
}

// stream sends the operation's state now and at every change until it
// completes or the client goes away. A keep-alive update goes out every
// 30 s while nothing changes.
func (s *executionServer) stream(ctx context.Context, op *scheduler.Operation, out opSender) error {
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		snap, ch := op.Watch()
		if err := out.Send(toOperation(op, snap)); err != nil {
			return err
		}
		if snap.Stage == repb.ExecutionStage_COMPLETED {
			return nil
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

func waitDone(op *scheduler.Operation) {
	for {
		snap, ch := op.Watch()
		if snap.Stage == repb.ExecutionStage_COMPLETED {
			return
		}
		<-ch
	}
}

// load reads and validates the Action, its Command and its input tree, and
// returns every input blob. Missing blobs give FAILED_PRECONDITION listing
// each of them, so the client re-uploads and retries.
func (s *executionServer) load(ctx context.Context, inst *Instance, ad digest.Digest) (*scheduler.Task, []digest.Digest, error) {
	action := &repb.Action{}
	if err := readProto(ctx, inst.CAS, ad, action, "Action"); err != nil {
		return nil, nil, err
	}
	cd, err := digest.FromProto(action.GetCommandDigest())
	if err != nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "Action %s: command_digest: %v", ad, err)
	}
	rd, err := digest.FromProto(action.GetInputRootDigest())
	if err != nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "Action %s: input_root_digest: %v", ad, err)
	}
	if t := action.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() < 0 {
			return nil, nil, status.Errorf(codes.InvalidArgument, "Action %s: invalid timeout", ad)
		}
		if t.AsDuration() > s.maxTimeout {
			return nil, nil, status.Errorf(codes.InvalidArgument, "Action %s asks for a timeout of %s; this farm allows at most %s", ad, t.AsDuration(), s.maxTimeout)
		}
	}
	var missing []digest.Digest
	cmd := &repb.Command{}
	if err := readProto(ctx, inst.CAS, cd, cmd, "Command"); err != nil {
		if grpcstatus.Code(err) != codes.FailedPrecondition {
			return nil, nil, err
		}
		missing = append(missing, cd)
	} else if err := ValidateCommand(cmd); err != nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "Command %s: %v", cd, err)
	}
	in, err := s.treeReader(inst).Collect(ctx, rd, merkle.Limits{})
	if err != nil {
		return nil, nil, grpcstatus.Wrapf(err, "input root %s", rd)
	}
	missing = append(missing, in.Missing...)
	all := append(append([]digest.Digest{ad, cd}, in.Directories...), in.Files...)
	fm, err := inst.CAS.FindMissing(ctx, in.Files)
	if err != nil {
		return nil, nil, grpcstatus.Wrapf(err, "checking the inputs of %s", ad)
	}
	missing = append(missing, fm...)
	if len(missing) > 0 {
		return nil, nil, grpcstatus.MissingBlobs(missing)
	}
	return &scheduler.Task{Instance: inst.Name, ActionDigest: ad, Action: action, Command: cmd}, all, nil
}

// treeReader returns the Directory reader of an instance. Each instance has
// its own, so a cached Directory is only ever served to callers who may read
// that instance's CAS.
func (s *executionServer) treeReader(inst *Instance) *merkle.Reader {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.trees[inst]
	if r == nil {
		r = merkle.NewReader(inst.CAS, 0)
		s.trees[inst] = r
	}
	return r
}

func readProto(ctx context.Context, cas blobstore.Store, d digest.Digest, m proto.Message, what string) error {
	if d.Size > maxActionBytes {
		return status.Errorf(codes.InvalidArgument, "%s %s is larger than %d bytes", what, d, maxActionBytes)
	}
	rc, err := cas.Get(ctx, d, 0)
	if errors.Is(err, blobstore.ErrNotFound) {
		return grpcstatus.MissingBlobs([]digest.Digest{d})
	}
	if err != nil {
		return grpcstatus.Wrapf(err, "reading %s %s", what, d)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxActionBytes+1))
	if err != nil {
		return grpcstatus.Wrapf(err, "reading %s %s", what, d)
	}
	if got := digest.OfBytes(b); got != d {
		return status.Errorf(codes.Internal, "%s %s: stored content hashes to %s", what, d, got)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "%s %s does not decode: %v", what, d, err)
	}
	return nil
}

// ValidateCommand checks what the farm relies on: arguments are present and
// every output path is relative, clean and inside the input root.
func ValidateCommand(cmd *repb.Command) error {
	if len(cmd.GetArguments()) == 0 || cmd.GetArguments()[0] == "" {
		return errors.New("no arguments")
	}
	for _, v := range cmd.GetEnvironmentVariables() {
		if v.GetName() == "" || strings.ContainsAny(v.GetName(), "=\x00") || strings.Contains(v.GetValue(), "\x00") {
			return fmt.Errorf("bad environment variable %q", v.GetName())
		}
	}
	if wd := cmd.GetWorkingDirectory(); wd != "" {
		if err := CheckRelativePath(wd); err != nil {
			return fmt.Errorf("working_directory: %v", err)
		}
	}
	check := func(field string, ps []string) error {
		for _, p := range ps {
			if err := CheckRelativePath(p); err != nil {
				return fmt.Errorf("%s %q: %v", field, p, err)
			}
		}
		return nil
	}
	for _, c := range []struct {
		field string
		ps    []string
	}{{"output_files", cmd.GetOutputFiles()}, {"output_directories", cmd.GetOutputDirectories()}, {"output_paths", cmd.GetOutputPaths()}} {
		if err := check(c.field, c.ps); err != nil {
			return err
		}
	}
	return nil
}

// CheckRelativePath accepts clean relative paths that stay inside the root.
func CheckRelativePath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case strings.HasPrefix(p, "/"):
		return errors.New("absolute path; outputs must be relative to the input root")
	case strings.Contains(p, "\x00"):
		return errors.New("path contains NUL")
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return errors.New("path contains \"..\"")
		}
	}
	if path.Clean(p) != p {
		return errors.New("path is not clean (double or trailing slashes, \".\")")
	}
	return nil
}

func requestMetadata(ctx context.Context) *repb.RequestMetadata {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil
	}
	vs := md.Get(requestMetadataKey)
	if len(vs) == 0 {
		return nil
	}
	m := &repb.RequestMetadata{}
	if err := proto.Unmarshal([]byte(vs[0]), m); err != nil {
		return nil
	}
	return m
}

func toOperation(op *scheduler.Operation, snap scheduler.Snapshot) *lrpb.Operation {
	meta := &repb.ExecuteOperationMetadata{Stage: snap.Stage, ActionDigest: op.Task.ActionDigest.ToProto(), DigestFunction: digest.SHA256}
	if !snap.QueuedAt.IsZero() {
		meta.PartialExecutionMetadata = &repb.ExecutedActionMetadata{Worker: snap.Worker, QueuedTimestamp: timestamppb.New(snap.QueuedAt)}
		if !snap.Started.IsZero() {
			meta.PartialExecutionMetadata.WorkerStartTimestamp = timestamppb.New(snap.Started)
		}
	}
	out := &lrpb.Operation{Name: op.Name, Metadata: mustAny(meta)}
	if snap.Stage != repb.ExecutionStage_COMPLETED {
		return out
	}
	out.Done = true
	switch {
	case snap.Outcome == nil:
		out.Result = &lrpb.Operation_Error{Error: status.New(codes.Internal, "operation completed without an outcome").Proto()}
	case snap.Outcome.Err != nil:
		// Reported inside an ExecuteResponse so that Bazel acts on the code
		// (FAILED_PRECONDITION with missing blobs: re-upload and retry).
		st := status.Convert(grpcstatus.FromError(snap.Outcome.Err))
		if errors.Is(snap.Outcome.Err, context.Canceled) {
			st = status.New(codes.Canceled, "the action was cancelled")
		} else if errors.Is(snap.Outcome.Err, scheduler.ErrClosed) {
			st = status.New(codes.Unavailable, "the farm is shutting down; retry")
		}
		out.Result = &lrpb.Operation_Response{Response: mustAny(&repb.ExecuteResponse{Status: st.Proto(), Message: st.Message()})}
	default:
		out.Result = &lrpb.Operation_Response{Response: mustAny(snap.Outcome.Response)}
	}
	return out
}

func completedOperation(name string, ad digest.Digest, resp *repb.ExecuteResponse) *lrpb.Operation {
	meta := &repb.ExecuteOperationMetadata{Stage: repb.ExecutionStage_COMPLETED, ActionDigest: ad.ToProto(), DigestFunction: digest.SHA256}
	return &lrpb.Operation{Name: name, Metadata: mustAny(meta), Done: true, Result: &lrpb.Operation_Response{Response: mustAny(resp)}}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// RegisterExecution registers s's Execution and Operations services.
func RegisterExecution(g *grpc.Server, s ExecutionServer) {
	repb.RegisterExecutionServer(g, s)
	lrpb.RegisterOperationsServer(g, s)
}
