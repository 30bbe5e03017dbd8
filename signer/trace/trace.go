package trace

import (
	"context"
	"errors"
	"fmt"
	"path"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/execlog"
)

// ErrRefused is the category of every refusal: something could not be
// verified. *RefusalError names it.
var ErrRefused = errors.New("trace refused")

// RefusalError names the first input that could not be verified.
type RefusalError struct {
	Path   string        // input path (or artifact name); may be empty
	Digest digest.Digest // the blob concerned
	Reason string
	Err    error // underlying error, if any
}

func (e *RefusalError) Error() string {
	var b strings.Builder
	b.WriteString("refused: ")
	if e.Path != "" {
		fmt.Fprintf(&b, "%q ", e.Path)
	}
	if e.Digest != (digest.Digest{}) {
		fmt.Fprintf(&b, "(%s) ", e.Digest)
	}
	b.WriteString(e.Reason)
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusalError) Is(target error) bool { return target == ErrRefused }

// Unwrap returns the underlying error.
func (e *RefusalError) Unwrap() error { return e.Err }

var _ error = (*RefusalError)(nil)

// Limits on what the tracer reads.
const (
	// MaxMessageBytes bounds an Action, Command or Directory blob.
	MaxMessageBytes = 16 << 20
	// DefaultInlineLimit is how large a client-written file may be for its
	// content to be returned.
	DefaultInlineLimit = 4096
)

// Option configures a Tracer.
type Option func(*options) error

type options struct {
	allowlist        Allowlist
	requireAllowlist bool
	untenanted       string
	inline           int64
}

// WithAllowlist sets the third-party allowlist. Default: none, every
// third-party repository is reported as unreviewed.
func WithAllowlist(a Allowlist) Option {
	return func(o *options) error {
		if a == nil {
			return errors.New("WithAllowlist: nil allowlist")
		}
		o.allowlist = a
		return nil
	}
}

// RequireAllowlist refuses any third-party repository whose tree is not on
// the allowlist. It needs WithAllowlist.
func RequireAllowlist() Option {
	return func(o *options) error { o.requireAllowlist = true; return nil }
}

// WithUntenantedRecordsAs treats log records that carry no tenant (written
// by a farm without tenant configuration) as records of tenant. Default:
// such records match no tenant.
func WithUntenantedRecordsAs(tenant string) Option {
	return func(o *options) error {
		if tenant == "" {
			return errors.New("WithUntenantedRecordsAs: empty tenant")
		}
		o.untenanted = tenant
		return nil
	}
}

// WithInlineLimit sets how large a client-written file may be for its
// content to be included in the result. Default DefaultInlineLimit.
func WithInlineLimit(n int64) Option {
	return func(o *options) error {
		if n < 0 || n > 1<<20 {
			return fmt.Errorf("WithInlineLimit(%d): want 0..1MiB", n)
		}
		o.inline = n
		return nil
	}
}

// Tracer traces artifacts. It is safe for concurrent use; each Trace call
// works on its own state.
type Tracer struct {
	log Log
	cas CAS
	src Sources
	o   options
}

// New returns a tracer over the farm's log and CAS that checks sources with
// src.
func New(log Log, cas CAS, src Sources, opts ...Option) (*Tracer, error) {
	if log == nil || cas == nil || src == nil {
		return nil, errors.New("trace: a log, a CAS and a source repository are required")
	}
	o := options{inline: DefaultInlineLimit}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
	}
	if o.requireAllowlist && o.allowlist == nil {
		return nil, errors.New("trace: RequireAllowlist needs WithAllowlist")
	}
	return &Tracer{log: log, cas: cas, src: src, o: o}, nil
}

// Artifact is one artifact to trace.
type Artifact struct {
	Name   string
	Digest digest.Digest
}

// Request is one trace.
type Request struct {
	Tenant    string
	Artifacts []Artifact
	// Commit is the claimed source commit, a full commit id.
	Commit string
	// InvocationID, if set, requires each artifact's producing action to
	// carry it as tool_invocation_id or correlated_invocations_id.
	InvocationID string
}

// Result is a complete, verified trace.
type Result struct {
	Tenant string
	Commit string
	// ProtectedBranch is the branch (short name, e.g. "main") the commit
	// was verified to be reachable from, when the Sources report one
	// (BranchReporter); "" otherwise.
	ProtectedBranch string
	// Repository is the URI of the repository the source files were
	// checked against, when the Sources report one (RepositoryReporter).
	Repository string
	Artifacts  []TracedArtifact
	// Actions are every action of the graph, ordered by log sequence number.
	Actions    []Action
	ThirdParty []ThirdParty // sorted by name
	// ClientWritten lists every client-written input, sorted by path.
	ClientWritten []ClientFile
	Counts        Counts
	// StartedOn and FinishedOn are the earliest start and latest completion
	// of the actions.
	StartedOn  time.Time
	FinishedOn time.Time
	// InvocationIDs are the distinct tool invocation ids of the artifacts'
	// actions, sorted.
	InvocationIDs []string
	// LogSeq and LogHash identify the last log record the trace verified
	// the chain through.
	LogSeq  uint64
	LogHash execlog.Hash
}

// TracedArtifact says which logged action produced an artifact.
type TracedArtifact struct {
	Name   string
	Digest digest.Digest
	Action digest.Digest
	Seq    uint64 // log record
	Path   string // output path in that action
}

// Action is one executed action of the graph.
type Action struct {
	Digest    digest.Digest
	Seq       uint64
	Command   digest.Digest
	InputRoot digest.Digest
	Arguments []string
	// Environment is the Command's environment, in its order.
	Environment []EnvVar
	Platform    []execlog.Property
	// Outputs are the paths of the output files and directories.
	Outputs  []string
	ExitCode int32
	Worker   string
	Started  time.Time
	Finished time.Time
	// From the client's RequestMetadata (claims); empty if not sent.
	Mnemonic                string
	TargetID                string
	ActionID                string
	ConfigurationID         string
	ToolInvocationID        string
	CorrelatedInvocationsID string
}

// EnvVar is one environment variable of a Command.
type EnvVar struct {
	Name  string
	Value string
}

// ThirdParty is one external repository the graph read.
type ThirdParty struct {
	Name string
	// Tree is the digest of the REAPI Directory tree formed by every file
	// the traced actions read from external/<Name>/ (merged over actions).
	Tree    digest.Digest
	Files   int
	Allowed bool // on the allowlist with this tree
}

// ClientFile is an input under bazel-out/ that no logged action produced.
type ClientFile struct {
	Path   string
	Digest digest.Digest
	// Content is the file's content if it is at most the inline limit.
	Content []byte
	// SymlinkTarget is set for a symbolic link in an input root, which is
	// disclosed as client-written wherever it is; Digest and Content are
	// then those of the target string.
	SymlinkTarget string
}

// Counts are the number of distinct (path, digest) input files per class.
type Counts struct {
	Generated     int
	Source        int
	ThirdParty    int
	ClientWritten int
}

// Input classes.
const (
	classGenerated = iota + 1
	classSource
	classThirdParty
	classClient
)

type fileKey struct {
	path string
	d    digest.Digest
}

// run is the state of one Trace. Actions are traced concurrently by a pool
// of workers (reading blobs is I/O-bound); mu guards the fields below it.
type run struct {
	t   *Tracer
	ctx context.Context
	req Request
	src SourceTree

	mu      sync.Mutex
	cond    *sync.Cond       // signalled when queue grows or an action finishes
	queue   []execlog.Record // actions to trace
	active  int              // actions being traced
	err     error            // the first refusal
	actions map[digest.Digest]*Action
	dirs    map[fileKey]bool
	files   map[fileKey]int
	third   map[string]*tnode
	client  map[string]ClientFile
	maxSeq  uint64
	maxHash execlog.Hash
}

// Trace traces every artifact of req. It returns the complete result, or
// an error (a *RefusalError for anything unverifiable) and no result.
func (t *Tracer) Trace(ctx context.Context, req Request) (*Result, error) {
	if req.Tenant == "" {
		return nil, &RefusalError{Reason: "no tenant"}
	}
	if len(req.Artifacts) == 0 {
		return nil, &RefusalError{Reason: "no artifacts"}
	}
	if err := t.log.Refresh(); err != nil {
		return nil, &RefusalError{Reason: "the execution log does not verify", Err: err}
	}
	src, err := t.src.At(ctx, req.Commit)
	if err != nil {
		return nil, &RefusalError{Reason: "the claimed commit cannot be used", Err: err}
	}
	defer src.Close()
	r := &run{t: t, ctx: ctx, req: req, src: src,
		actions: map[digest.Digest]*Action{}, dirs: map[fileKey]bool{}, files: map[fileKey]int{},
		third: map[string]*tnode{}, client: map[string]ClientFile{}}
	r.cond = sync.NewCond(&r.mu)
	res := &Result{Tenant: req.Tenant, Commit: req.Commit}
	if b, ok := src.(BranchReporter); ok {
		res.ProtectedBranch = b.ProtectedBranch()
	}
	if rr, ok := src.(RepositoryReporter); ok {
		res.Repository = rr.SourceRepository()
	}
	inv := map[string]bool{}
	for _, a := range req.Artifacts {
		rec, p, ok := r.producer(a.Digest, "", req.InvocationID, time.Time{})
		if !ok {
			why := "no action logged by the farm for this tenant produced it (uploaded by a client?)"
			if req.InvocationID != "" {
				why = fmt.Sprintf("no action logged by the farm for this tenant in invocation %q produced it", req.InvocationID)
			}
			return nil, &RefusalError{Path: a.Name, Digest: a.Digest, Reason: why}
		}
		res.Artifacts = append(res.Artifacts, TracedArtifact{Name: a.Name, Digest: a.Digest, Action: rec.Action, Seq: rec.Seq, Path: p})
		if rec.Request != nil && rec.Request.ToolInvocationID != "" {
			inv[rec.Request.ToolInvocationID] = true
		}
		r.mu.Lock()
		r.enqueue(rec)
		r.mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := 0; i < 4*runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker()
		}()
	}
	wg.Wait()
	if r.err != nil {
		return nil, r.err
	}
	// The chain through the newest record used covers every older one.
	if err := t.log.Verify(r.maxSeq); err != nil {
		return nil, &RefusalError{Reason: fmt.Sprintf("the execution log's chain does not verify through record %d", r.maxSeq), Err: err}
	}
	res.LogSeq, res.LogHash = r.maxSeq, r.maxHash
	if err := r.thirdParty(res); err != nil {
		return nil, err
	}
	for _, a := range r.actions {
		res.Actions = append(res.Actions, *a)
		if !a.Started.IsZero() && (res.StartedOn.IsZero() || a.Started.Before(res.StartedOn)) {
			res.StartedOn = a.Started
		}
		if a.Finished.After(res.FinishedOn) {
			res.FinishedOn = a.Finished
		}
	}
	sort.Slice(res.Actions, func(i, j int) bool { return res.Actions[i].Seq < res.Actions[j].Seq })
	for _, c := range r.client {
		res.ClientWritten = append(res.ClientWritten, c)
	}
	sort.Slice(res.ClientWritten, func(i, j int) bool { return res.ClientWritten[i].Path < res.ClientWritten[j].Path })
	for _, c := range r.files {
		switch c {
		case classGenerated:
			res.Counts.Generated++
		case classSource:
			res.Counts.Source++
		case classThirdParty:
			res.Counts.ThirdParty++
		case classClient:
			res.Counts.ClientWritten++
		}
	}
	for id := range inv {
		res.InvocationIDs = append(res.InvocationIDs, id)
	}
	sort.Strings(res.InvocationIDs)
	return res, nil
}

// owned reports whether rec belongs to the request's tenant.
func (r *run) owned(rec *execlog.Record) bool {
	if rec.Tenant == r.req.Tenant {
		return true
	}
	return rec.Tenant == "" && r.t.o.untenanted != "" && r.t.o.untenanted == r.req.Tenant
}

// producer finds the newest successful record of the tenant with an output
// file of digest d, preferring one whose output path is p. It returns the
// record and the output path.
//
// before is when the consuming action started (zero for a requested
// artifact). Several logged actions may have produced the same bytes (two
// versions of a source that compile to the same export data, say); the one
// whose output the consumer read completed before the consumer started, so
// such records are preferred, and only if there is none is any record taken.
func (r *run) producer(d digest.Digest, p, invocation string, before time.Time) (execlog.Record, string, bool) {
	if !before.IsZero() {
		if rec, path, ok := r.producerIn(d, p, invocation, before); ok {
			return rec, path, true
		}
	}
	return r.producerIn(d, p, invocation, time.Time{})
}

func (r *run) producerIn(d digest.Digest, p, invocation string, before time.Time) (execlog.Record, string, bool) {
	recs := r.t.log.Lookup(d)
	var best *execlog.Record
	var bestPath string
	for i := len(recs) - 1; i >= 0; i-- {
		rec := &recs[i]
		if rec.ExitCode != 0 || !r.owned(rec) || !before.IsZero() && rec.Completed.After(before) {
			continue
		}
		if invocation != "" && (rec.Request == nil || rec.Request.ToolInvocationID != invocation && rec.Request.CorrelatedInvocationsID != invocation) {
			continue
		}
		for _, o := range rec.Outputs {
			if o.Digest != d {
				continue
			}
			if p == "" || o.Path == p {
				return *rec, o.Path, true
			}
			if best == nil {
				best, bestPath = rec, o.Path
			}
		}
	}
	if best != nil {
		return *best, bestPath, true
	}
	return execlog.Record{}, "", false
}

// dirProducer finds a record with an output directory whose root Directory
// digest is d, preferring, as producer does, one that completed before.
func (r *run) dirProducer(d digest.Digest, before time.Time) (execlog.Record, bool) {
	if !before.IsZero() {
		if rec, ok := r.dirProducerIn(d, before); ok {
			return rec, true
		}
	}
	return r.dirProducerIn(d, time.Time{})
}

func (r *run) dirProducerIn(d digest.Digest, before time.Time) (execlog.Record, bool) {
	recs := r.t.log.Lookup(d)
	for i := len(recs) - 1; i >= 0; i-- {
		rec := &recs[i]
		if rec.ExitCode != 0 || !r.owned(rec) || !before.IsZero() && rec.Completed.After(before) {
			continue
		}
		for _, o := range rec.OutputDirectories {
			if o.Root == d {
				return *rec, true
			}
		}
	}
	return execlog.Record{}, false
}

// enqueue queues rec's action for tracing unless it was seen. Called with
// r.mu held.
func (r *run) enqueue(rec execlog.Record) {
	if _, seen := r.actions[rec.Action]; seen {
		return
	}
	r.actions[rec.Action] = &Action{Digest: rec.Action, Seq: rec.Seq} // filled in by action
	if rec.Seq > r.maxSeq {
		r.maxSeq, r.maxHash = rec.Seq, rec.Hash
	}
	r.queue = append(r.queue, rec)
	r.cond.Signal()
}

// worker traces queued actions until the queue is empty and no other
// worker can add to it, or the trace failed.
func (r *run) worker() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		for len(r.queue) == 0 && r.active > 0 && r.err == nil {
			r.cond.Wait()
		}
		if r.err != nil || len(r.queue) == 0 {
			r.cond.Broadcast()
			return
		}
		rec := r.queue[len(r.queue)-1]
		r.queue = r.queue[:len(r.queue)-1]
		r.active++
		r.mu.Unlock()
		err := r.ctx.Err()
		if err == nil {
			err = r.action(rec)
		}
		r.mu.Lock()
		r.active--
		if err != nil && r.err == nil {
			r.err = err
		}
		r.cond.Broadcast()
	}
}

func (r *run) failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err != nil
}

// blob reads d from the CAS and checks its content hashes to d.
func (r *run) blob(what, p string, d digest.Digest, limit int64) ([]byte, error) {
	b, err := r.t.cas.Get(r.ctx, d, limit)
	if err != nil {
		return nil, &RefusalError{Path: p, Digest: d, Reason: what + " cannot be read from the CAS", Err: err}
	}
	if got := digest.OfBytes(b); got != d {
		return nil, &RefusalError{Path: p, Digest: d, Reason: fmt.Sprintf("%s in the CAS is corrupt or substituted: its content hashes to %s", what, got)}
	}
	return b, nil
}

func (r *run) message(what, p string, d digest.Digest, m proto.Message) error {
	b, err := r.blob(what, p, d, MaxMessageBytes)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return &RefusalError{Path: p, Digest: d, Reason: what + " does not parse", Err: err}
	}
	return nil
}

// action traces one logged action: its Action, Command and input tree.
func (r *run) action(rec execlog.Record) error {
	label := "action " + rec.Action.String()
	var act repb.Action
	if err := r.message("the Action message of log record "+fmt.Sprint(rec.Seq), "", rec.Action, &act); err != nil {
		return err
	}
	cd, err := digest.FromProto(act.GetCommandDigest())
	if err != nil || cd != rec.Command {
		return &RefusalError{Digest: rec.Action, Reason: fmt.Sprintf("%s: the Action's command digest %v differs from log record %d's %s", label, act.GetCommandDigest(), rec.Seq, rec.Command)}
	}
	rd, err := digest.FromProto(act.GetInputRootDigest())
	if err != nil || rd != rec.InputRoot {
		return &RefusalError{Digest: rec.Action, Reason: fmt.Sprintf("%s: the Action's input root digest %v differs from log record %d's %s", label, act.GetInputRootDigest(), rec.Seq, rec.InputRoot)}
	}
	var cmd repb.Command
	if err := r.message("the Command of "+label, "", cd, &cmd); err != nil {
		return err
	}
	a := &Action{Digest: rec.Action, Seq: rec.Seq, Command: cd, InputRoot: rd, Arguments: cmd.GetArguments(),
		Platform: rec.Platform, ExitCode: rec.ExitCode, Worker: rec.Worker, Started: rec.Started, Finished: rec.Completed}
	for _, e := range cmd.GetEnvironmentVariables() {
		a.Environment = append(a.Environment, EnvVar{Name: e.GetName(), Value: e.GetValue()})
	}
	for _, o := range rec.Outputs {
		a.Outputs = append(a.Outputs, o.Path)
	}
	for _, o := range rec.OutputDirectories {
		a.Outputs = append(a.Outputs, o.Path)
	}
	if m := rec.Request; m != nil {
		a.Mnemonic, a.TargetID, a.ActionID, a.ConfigurationID = m.ActionMnemonic, m.TargetID, m.ActionID, m.ConfigurationID
		a.ToolInvocationID, a.CorrelatedInvocationsID = m.ToolInvocationID, m.CorrelatedInvocationsID
	}
	r.mu.Lock()
	*r.actions[rec.Action] = *a
	r.mu.Unlock()
	// Input paths are relative to the input root; Command paths relative to
	// the working directory do not matter here.
	return r.dir("", rd, 0, rec.Started)
}

// dir walks a Directory of an input root at path p, for an action that
// started at before.
func (r *run) dir(p string, d digest.Digest, forced int, before time.Time) error {
	k := fileKey{p, d}
	r.mu.Lock()
	seen := r.dirs[k]
	r.dirs[k] = true
	r.mu.Unlock()
	if seen || r.failed() {
		return nil
	}
	if forced == 0 && under(p, "bazel-out") && p != "bazel-out" {
		if rec, ok := r.dirProducer(d, before); ok {
			r.mu.Lock()
			r.enqueue(rec)
			r.mu.Unlock()
			forced = classGenerated
		}
	}
	var dm repb.Directory
	what := "the Directory"
	if p == "" {
		what = "the input root Directory"
	}
	if err := r.message(what, p, d, &dm); err != nil {
		return err
	}
	names := map[string]bool{}
	name := func(n string) (string, error) {
		if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") || names[n] {
			return "", &RefusalError{Path: p, Digest: d, Reason: fmt.Sprintf("the Directory has an invalid or duplicate entry name %q", n)}
		}
		names[n] = true
		if p == "" {
			return n, nil
		}
		return p + "/" + n, nil
	}
	for _, f := range dm.GetFiles() {
		fp, err := name(f.GetName())
		if err != nil {
			return err
		}
		fd, err := digest.FromProto(f.GetDigest())
		if err != nil {
			return &RefusalError{Path: fp, Reason: "invalid file digest", Err: err}
		}
		if err := r.file(fp, fd, f.GetIsExecutable(), forced, before); err != nil {
			return err
		}
	}
	for _, s := range dm.GetSymlinks() {
		sp, err := name(s.GetName())
		if err != nil {
			return err
		}
		r.mu.Lock()
		target := []byte(s.GetTarget())
		r.client[sp] = ClientFile{Path: sp, Digest: digest.OfBytes(target), Content: target, SymlinkTarget: s.GetTarget()}
		r.files[fileKey{sp, digest.OfBytes(target)}] = classClient
		r.mu.Unlock()
	}
	for _, sub := range dm.GetDirectories() {
		sp, err := name(sub.GetName())
		if err != nil {
			return err
		}
		sd, err := digest.FromProto(sub.GetDigest())
		if err != nil {
			return &RefusalError{Path: sp, Reason: "invalid directory digest", Err: err}
		}
		if err := r.dir(sp, sd, forced, before); err != nil {
			return err
		}
	}
	return nil
}

func under(p, top string) bool { return p == top || strings.HasPrefix(p, top+"/") }

// file classifies one input file. Each (path, digest) is classified once;
// a concurrent duplicate returns at once (the first one's failure, if any,
// fails the trace).
func (r *run) file(p string, d digest.Digest, exec bool, forced int, before time.Time) error {
	k := fileKey{p, d}
	r.mu.Lock()
	_, done := r.files[k]
	if !done {
		r.files[k] = 0 // in progress
	}
	r.mu.Unlock()
	if done {
		return nil
	}
	class, err := r.classify(p, d, exec, forced, before)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.files[k] = class
	r.mu.Unlock()
	return nil
}

func (r *run) classify(p string, d digest.Digest, exec bool, forced int, before time.Time) (int, error) {
	switch {
	case forced != 0:
		return forced, nil
	case under(p, "external"):
		rest := strings.TrimPrefix(p, "external/")
		repo, rel, ok := strings.Cut(rest, "/")
		if !ok {
			return 0, &RefusalError{Path: p, Digest: d, Reason: "a file directly under external/ belongs to no repository"}
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		n := r.third[repo]
		if n == nil {
			n = &tnode{}
			r.third[repo] = n
		}
		if err := n.add(rel, d, exec); err != nil {
			return 0, &RefusalError{Path: p, Digest: d, Reason: err.Error()}
		}
		return classThirdParty, nil
	case under(p, "bazel-out"):
		if rec, _, ok := r.producer(d, p, "", before); ok {
			r.mu.Lock()
			r.enqueue(rec)
			r.mu.Unlock()
			return classGenerated, nil
		}
		cf := ClientFile{Path: p, Digest: d}
		if d.Size <= r.t.o.inline {
			b, err := r.blob("the client-written file", p, d, r.t.o.inline)
			if err != nil {
				return 0, err
			}
			cf.Content = b
		}
		r.mu.Lock()
		r.client[p] = cf
		r.mu.Unlock()
		return classClient, nil
	default:
		if err := r.src.Check(r.ctx, p, d); err != nil {
			return 0, &RefusalError{Path: p, Digest: d, Reason: "source file not verified in the claimed commit", Err: err}
		}
		return classSource, nil
	}
}

// thirdParty computes each repository's tree digest and checks the allowlist.
func (r *run) thirdParty(res *Result) error {
	names := make([]string, 0, len(r.third))
	for n := range r.third {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		node := r.third[n]
		tree, err := node.digest()
		if err != nil {
			return &RefusalError{Path: path.Join("external", n), Reason: "cannot compute the repository's tree digest", Err: err}
		}
		tp := ThirdParty{Name: n, Tree: tree, Files: node.count(), Allowed: r.t.o.allowlist.Allows(n, tree)}
		if r.t.o.requireAllowlist && !tp.Allowed {
			return &RefusalError{Path: "external/" + n, Digest: tree, Reason: "third-party repository is not on the allowlist with this tree digest"}
		}
		res.ThirdParty = append(res.ThirdParty, tp)
	}
	return nil
}
