// Package worker executes REAPI actions: it materialises the input root from
// the CAS into a fresh directory (hard links, read-only), runs the command
// through a sandbox.Runner as an unprivileged uid, and stores the outputs,
// stdout and stderr in the CAS, returning an ActionResult that serves REAPI
// 2.0 and 2.1+ clients alike.
//
// On disk, under the worker's directory (mode 0711):
//
//	actions/<n>/root     one action's input root (removed when it ends;
//	                     everything under actions/ is removed by New)
//	actions/<n>/stdout   its stdout and stderr
//	cache/<2 hex>/<hash>[x]  worker-local read-only copies of blobs: executable
//	                     variants (0555, suffix x) and, for stores that are
//	                     not Linkers, plain ones (0444). Never evicted today.
//
// The directory must be on the same file system as a Linker store's files
// for inputs to be hard links of the CAS files.
package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/sandbox"
)

// Worker executes actions. It is safe for concurrent use; at most as many
// actions run at once as it has slots, each slot with its own host uid.
type Worker struct {
	store    blobstore.Store
	linker   blobstore.Linker // nil unless store is one
	linkable atomic.Bool      // false once linking from the store hit EXDEV
	runner   sandbox.Runner
	opts     options
	dir      string
	cacheDir string
	slots    chan int
	seq      atomic.Uint64
	dirs     dirCache
}

type options struct {
	id             string
	slots          int
	uidBase        int
	defaultTimeout time.Duration
	maxTimeout     time.Duration
	limits         sandbox.Limits
	maxInputNodes  int
	maxOutputNodes int
	maxOutputBytes int64
}

// Option configures New.
type Option func(*options) error

// WithID sets the worker id reported in ExecutedActionMetadata.worker.
// Default: "<hostname>/worker".
func WithID(id string) Option {
	return func(o *options) error { o.id = id; return nil }
}

// WithSlots sets how many actions may run at once. Default: the number of
// CPUs.
func WithSlots(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("slots %d: need at least 1", n)
		}
		o.slots = n
		return nil
	}
}

// WithUIDBase sets the host uid (and gid) of slot 0; slot i runs as base+i.
// These ids must belong to no one else. Default 61000.
func WithUIDBase(base int) Option {
	return func(o *options) error {
		if base < 1000 {
			return fmt.Errorf("uid base %d is below 1000, where system users live", base)
		}
		o.uidBase = base
		return nil
	}
}

// WithTimeouts sets the timeout of actions that ask for none and the cap on
// the ones that do. Defaults 15 minutes and 1 hour.
func WithTimeouts(def, max time.Duration) Option {
	return func(o *options) error {
		if def <= 0 || max < def {
			return fmt.Errorf("timeouts default %v, max %v: need 0 < default <= max", def, max)
		}
		o.defaultTimeout, o.maxTimeout = def, max
		return nil
	}
}

// WithLimits sets the per-action sandbox limits (Timeout is ignored: see
// WithTimeouts). Defaults: 4 GiB memory, 1024 processes, 4 GiB per file,
// 1 GiB /tmp.
func WithLimits(l sandbox.Limits) Option {
	return func(o *options) error { o.limits = l; return nil }
}

// WithMaxOutputBytes bounds the total size of an action's output files.
// Default 8 GiB.
func WithMaxOutputBytes(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("max output bytes %d must be positive", n)
		}
		o.maxOutputBytes = n
		return nil
	}
}

// New returns a Worker that keeps its files in dir (created if needed; what
// a previous run left under dir/actions is removed), reads inputs from and
// writes outputs to store, and runs commands with runner.
func New(dir string, store blobstore.Store, runner sandbox.Runner, opts ...Option) (*Worker, error) {
	host, _ := os.Hostname()
	o := options{
		id:             host + "/worker",
		slots:          runtime.NumCPU(),
		uidBase:        61000,
		defaultTimeout: 15 * time.Minute,
		maxTimeout:     time.Hour,
		limits:         sandbox.Limits{MemoryBytes: 4 << 30, Processes: 1024, FileSizeBytes: 4 << 30, TmpBytes: 1 << 30},
		maxInputNodes:  4 << 20,
		maxOutputNodes: 1 << 20,
		maxOutputBytes: 8 << 30,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
	}
	w := &Worker{store: store, runner: runner, opts: o, dir: dir, cacheDir: filepath.Join(dir, "cache")}
	w.dirs.max = 100000
	if l, ok := store.(blobstore.Linker); ok {
		w.linker = l
		w.linkable.Store(true)
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	actions := filepath.Join(dir, "actions")
	if err := os.RemoveAll(actions); err != nil {
		return nil, fmt.Errorf("worker: removing what a previous run left: %w", err)
	}
	if err := os.Mkdir(actions, 0o711); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if err := os.MkdirAll(w.cacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	w.slots = make(chan int, o.slots)
	for i := 0; i < o.slots; i++ {
		w.slots <- i
	}
	return w, nil
}

// Job is one action to execute.
type Job struct {
	// Action is the action; required.
	Action *repb.Action
	// Command is the action's command; when nil it is read from the store
	// by Action.command_digest.
	Command *repb.Command
	// InlineStdioLimit makes stdout and stderr of at most this many bytes
	// also appear in stdout_raw/stderr_raw. Zero never inlines.
	InlineStdioLimit int64
}

// Outcome is what executing a Job gave.
type Outcome struct {
	// Result is the ActionResult, with execution_metadata's worker,
	// worker start/completed, input fetch, execution and output upload
	// timestamps set (queued time is the scheduler's). It is set whenever
	// the command ran, also when it timed out.
	Result *repb.ActionResult
	// TimedOut is true when the command ran past its timeout and was
	// killed. REAPI wants ExecuteResponse.status DEADLINE_EXCEEDED then,
	// and the result must not be cached.
	TimedOut bool
	// Sandbox is what the runner reported (kill reason, CPU time, ...).
	Sandbox sandbox.Result
}

// Execute runs one action. Errors are gRPC status errors the Execution
// service can return as they are: InvalidArgument for malformed actions,
// commands or input trees (bad names, unsorted entries, escaping symlinks,
// absolute or ".." output paths), FailedPrecondition with a
// PreconditionFailure listing every missing blob (type MISSING, subject
// "blobs/<hash>/<size>"), ResourceExhausted for outputs over the bound,
// Canceled/DeadlineExceeded when ctx ends, Internal otherwise.
func (w *Worker) Execute(ctx context.Context, job Job) (Outcome, error) {
	md := &repb.ExecutedActionMetadata{Worker: w.opts.id, WorkerStartTimestamp: timestamppb.Now()}
	if job.Action == nil {
		return Outcome{}, status.Error(codes.InvalidArgument, "worker: no action")
	}
	timeout, err := w.timeout(job.Action)
	if err != nil {
		return Outcome{}, err
	}
	rootDigest, err := digest.FromProto(job.Action.GetInputRootDigest())
	if err != nil {
		return Outcome{}, status.Errorf(codes.InvalidArgument, "worker: input root digest: %v", err)
	}
	var slot int
	select {
	case slot = <-w.slots:
	case <-ctx.Done():
		return Outcome{}, status.FromContextError(ctx.Err()).Err()
	}
	defer func() { w.slots <- slot }()
	uid := w.opts.uidBase + slot

	actionDir := filepath.Join(w.dir, "actions", strconv.FormatUint(w.seq.Add(1), 10))
	if err := os.Mkdir(actionDir, 0o711); err != nil {
		return Outcome{}, status.Errorf(codes.Internal, "worker: %v", err)
	}
	defer os.RemoveAll(actionDir)
	root := filepath.Join(actionDir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return Outcome{}, status.Errorf(codes.Internal, "worker: %v", err)
	}

	// Input fetch.
	md.InputFetchStartTimestamp = timestamppb.Now()
	cmd := job.Command
	var missing []digest.Digest
	if cmd == nil {
		cd, err := digest.FromProto(job.Action.GetCommandDigest())
		if err != nil {
			return Outcome{}, status.Errorf(codes.InvalidArgument, "worker: command digest: %v", err)
		}
		blob, err := readBlob(ctx, w.store, cd)
		switch {
		case errors.Is(err, blobstore.ErrNotFound):
			missing = append(missing, cd)
		case err != nil:
			return Outcome{}, status.Errorf(codes.Internal, "worker: reading command %s: %v", cd, err)
		default:
			if got := digest.OfBytes(blob); got != cd {
				return Outcome{}, status.Errorf(codes.InvalidArgument, "worker: command blob %s hashes to %s", cd, got)
			}
			cmd = &repb.Command{}
			if err := proto.Unmarshal(blob, cmd); err != nil {
				return Outcome{}, status.Errorf(codes.InvalidArgument, "worker: command %s does not parse: %v", cd, err)
			}
		}
	}
	dirs, missingDirs, err := w.fetchTree(ctx, rootDigest)
	if err != nil {
		return Outcome{}, treeError(err)
	}
	missing = append(missing, missingDirs...)
	m := &materializer{w: w, ctx: ctx, dirs: dirs, root: root, missing: digest.Set{}}
	if err := m.build(rootDigest, ""); err != nil {
		return Outcome{}, treeError(err)
	}
	for _, d := range m.missing.Sorted() {
		missing = append(missing, d)
	}
	if len(missing) > 0 {
		return Outcome{}, missingError(missing)
	}
	if err := checkCommand(cmd); err != nil {
		return Outcome{}, err
	}
	outs, err := parseOutputs(cmd)
	if err != nil {
		return Outcome{}, status.Errorf(codes.InvalidArgument, "worker: %v", err)
	}
	writable, err := prepareOutputs(root, cmd.WorkingDirectory, outs, uid, uid)
	if err != nil {
		return Outcome{}, err
	}
	md.InputFetchCompletedTimestamp = timestamppb.Now()

	// Execution.
	env := make([]string, 0, len(cmd.EnvironmentVariables))
	for _, e := range cmd.EnvironmentVariables {
		env = append(env, e.Name+"="+e.Value)
	}
	limits := w.opts.limits
	limits.Timeout = timeout
	spec := sandbox.Spec{
		Args:       cmd.Arguments,
		Env:        env,
		InputRoot:  root,
		WorkingDir: cmd.WorkingDirectory,
		Writable:   writable,
		Stdout:     filepath.Join(actionDir, "stdout"),
		Stderr:     filepath.Join(actionDir, "stderr"),
		UID:        uint32(uid),
		GID:        uint32(uid),
		Limits:     limits,
	}
	md.ExecutionStartTimestamp = timestamppb.Now()
	res, err := w.runner.Run(ctx, spec)
	md.ExecutionCompletedTimestamp = timestamppb.Now()
	if err != nil {
		if ctx.Err() != nil {
			return Outcome{Sandbox: res}, status.FromContextError(ctx.Err()).Err()
		}
		return Outcome{Sandbox: res}, status.Errorf(codes.Internal, "worker: %v", err)
	}

	// Output upload.
	md.OutputUploadStartTimestamp = timestamppb.Now()
	ar := &repb.ActionResult{ExitCode: int32(res.ExitCode)}
	rootFD, err := openDir(root)
	if err != nil {
		return Outcome{}, status.Errorf(codes.Internal, "worker: %v", err)
	}
	col := &collector{ctx: ctx, w: w, rootFD: rootFD, tmpDir: actionDir}
	err = col.collect(outs, ar)
	closeFD(rootFD)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return Outcome{}, err
		}
		return Outcome{}, status.Errorf(codes.Internal, "worker: collecting outputs: %v", err)
	}
	for _, s := range []struct {
		path   string
		digest **repb.Digest
		raw    *[]byte
	}{{spec.Stdout, &ar.StdoutDigest, &ar.StdoutRaw}, {spec.Stderr, &ar.StderrDigest, &ar.StderrRaw}} {
		d, raw, err := w.storeFile(ctx, s.path, job.InlineStdioLimit)
		if err != nil {
			return Outcome{}, status.Errorf(codes.Internal, "worker: storing stdout/stderr: %v", err)
		}
		*s.digest = d.ToProto()
		*s.raw = raw
	}
	md.OutputUploadCompletedTimestamp = timestamppb.Now()
	md.WorkerCompletedTimestamp = timestamppb.Now()
	ar.ExecutionMetadata = md
	return Outcome{Result: ar, TimedOut: res.Killed == sandbox.Timeout, Sandbox: res}, nil
}

// timeout returns the action's timeout: its own, capped, or the default.
func (w *Worker) timeout(a *repb.Action) (time.Duration, error) {
	t := a.GetTimeout()
	if t == nil {
		return w.opts.defaultTimeout, nil
	}
	if err := t.CheckValid(); err != nil || t.AsDuration() < 0 {
		return 0, status.Errorf(codes.InvalidArgument, "worker: action timeout %v is not valid", t)
	}
	d := t.AsDuration()
	switch {
	case d == 0:
		return w.opts.defaultTimeout, nil
	case d > w.opts.maxTimeout:
		return w.opts.maxTimeout, nil
	}
	return d, nil
}

func checkCommand(cmd *repb.Command) error {
	if len(cmd.GetArguments()) == 0 || cmd.Arguments[0] == "" {
		return status.Error(codes.InvalidArgument, "worker: command has no arguments")
	}
	if wd := cmd.GetWorkingDirectory(); wd != "" {
		if err := sandbox.CheckRelative(wd); err != nil {
			return status.Errorf(codes.InvalidArgument, "worker: working directory: %v", err)
		}
	}
	for _, e := range cmd.GetEnvironmentVariables() {
		if e.Name == "" || containsAny(e.Name, "=\x00") || containsAny(e.Value, "\x00") {
			return status.Errorf(codes.InvalidArgument, "worker: environment variable %q is not valid", e.Name)
		}
	}
	for _, a := range cmd.Arguments {
		if containsAny(a, "\x00") {
			return status.Error(codes.InvalidArgument, "worker: an argument contains NUL")
		}
	}
	return nil
}

func containsAny(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}

func treeError(err error) error {
	if errors.Is(err, ErrInvalidTree) {
		return status.Errorf(codes.InvalidArgument, "worker: %v", err)
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Errorf(codes.Internal, "worker: materialising inputs: %v", err)
}

// missingError is FAILED_PRECONDITION with one MISSING violation per blob.
func missingError(ds []digest.Digest) error {
	pf := &errdetails.PreconditionFailure{}
	for _, d := range ds {
		pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
			Type: "MISSING", Subject: "blobs/" + d.Hash + "/" + strconv.FormatInt(d.Size, 10),
		})
	}
	st := status.Newf(codes.FailedPrecondition, "worker: %d input blobs are missing, first %s", len(ds), ds[0])
	if withDetails, err := st.WithDetails(pf); err == nil {
		st = withDetails
	}
	return st.Err()
}
