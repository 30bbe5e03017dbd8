package farm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/execlog"
	"github.com/hallmark-build/hallmark/builder/scheduler"
)

// Executor runs one task to completion on a worker and returns the
// ActionResult with every output already stored in the CAS. timedOut
// reports that the action ran past its timeout and was killed. The error is
// an infrastructure failure (no result).
type Executor interface {
	Execute(ctx context.Context, t *scheduler.Task) (res *repb.ActionResult, timedOut bool, err error)
}

// Recorder appends executed actions to the execution log.
type Recorder interface {
	Append(ctx context.Context, rec execlog.Record) (uint64, error)
}

// ResultStore is where the farm caches the results of actions it executed.
type ResultStore interface {
	Put(ctx context.Context, instance string, action digest.Digest, res *repb.ActionResult) error
}

// runner is one worker slot: it pulls tasks, executes them, logs and caches
// the results, and reports to the scheduler.
type runner struct {
	id      string
	sched   *scheduler.Scheduler
	exec    Executor
	log     Recorder
	results ResultStore
	accept  scheduler.Accept
	logger  *slog.Logger
	metrics *metrics

	// Multi-tenant farms only: idle counts this slot's pool's free slots
	// while it waits for work, done is called after each task, and
	// taskResults replaces results.
	idle        *atomic.Int64
	done        func(*scheduler.Task)
	taskResults TaskResultStore
}

// TaskResultStore caches results by task (so by tenant).
type TaskResultStore interface {
	Put(ctx context.Context, t *scheduler.Task, action digest.Digest, res *repb.ActionResult) error
}

func (r *runner) loop(ctx context.Context) {
	for {
		if r.idle != nil {
			r.idle.Add(1)
		}
		op, err := r.sched.Next(ctx, r.id, r.accept)
		if r.idle != nil {
			r.idle.Add(-1)
		}
		if err != nil {
			return
		}
		r.metrics.executing.Inc()
		out := r.run(op)
		r.metrics.executing.Dec()
		if r.done != nil {
			r.done(op.Task)
		}
		r.sched.Finish(op, out)
	}
}

func (r *runner) run(op *scheduler.Operation) scheduler.Outcome {
	t := op.Task
	ctx := op.Context()
	snap, _ := op.Watch()
	start := time.Now()
	res, timedOut, err := r.exec.Execute(ctx, t)
	r.metrics.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		r.metrics.actions.WithLabelValues("error").Inc()
		if !errors.Is(err, context.Canceled) {
			r.logger.Warn("action failed on the worker", "action", t.ActionDigest.String(), "worker", r.id, "err", err)
		}
		return scheduler.Outcome{Err: err}
	}
	if md := res.GetExecutionMetadata(); md != nil {
		md.Worker = r.id
		md.QueuedTimestamp = tsOrNil(snap.QueuedAt)
	}
	rec := record(t, res, r.id, snap.QueuedAt, snap.Started)
	// Appending is not subject to the action's cancellation: once the action
	// ran, its record must be written.
	if _, err := r.log.Append(context.WithoutCancel(ctx), rec); err != nil {
		r.metrics.actions.WithLabelValues("error").Inc()
		r.logger.Error("cannot append to the execution log", "action", t.ActionDigest.String(), "err", err)
		return scheduler.Outcome{Err: status.Errorf(codes.Internal, "the farm could not record the action in its execution log: %v", err)}
	}
	resp := &repb.ExecuteResponse{Result: res}
	switch {
	case timedOut:
		r.metrics.actions.WithLabelValues("timeout").Inc()
		resp.Status = status.Newf(codes.DeadlineExceeded, "the action ran past its timeout and was killed").Proto()
	case res.GetExitCode() != 0:
		r.metrics.actions.WithLabelValues("nonzero").Inc()
	default:
		r.metrics.actions.WithLabelValues("ok").Inc()
		if !t.DoNotCache {
			var err error
			if r.taskResults != nil {
				err = r.taskResults.Put(context.WithoutCancel(ctx), t, t.ActionDigest, res)
			} else {
				err = r.results.Put(context.WithoutCancel(ctx), t.Instance, t.ActionDigest, res)
			}
			if err != nil {
				r.logger.Warn("cannot cache an action result", "action", t.ActionDigest.String(), "err", err)
			}
		}
	}
	return scheduler.Outcome{Response: resp}
}

func record(t *scheduler.Task, res *repb.ActionResult, worker string, queued, started time.Time) execlog.Record {
	rec := execlog.Record{
		Tenant:    t.Tenant,
		Instance:  t.Instance,
		Action:    t.ActionDigest,
		ExitCode:  res.GetExitCode(),
		Worker:    worker,
		Queued:    queued,
		Started:   started,
		Completed: time.Now(),
	}
	rec.Command, _ = digest.FromProto(t.Action.GetCommandDigest())
	rec.InputRoot, _ = digest.FromProto(t.Action.GetInputRootDigest())
	platform := t.Action.GetPlatform()
	if platform == nil {
		platform = t.Command.GetPlatform()
	}
	for _, p := range platform.GetProperties() {
		rec.Platform = append(rec.Platform, execlog.Property{Name: p.GetName(), Value: p.GetValue()})
	}
	for _, f := range res.GetOutputFiles() {
		d, _ := digest.FromProto(f.GetDigest())
		rec.Outputs = append(rec.Outputs, execlog.OutputFile{Path: f.GetPath(), Digest: d, IsExecutable: f.GetIsExecutable()})
	}
	for _, dir := range res.GetOutputDirectories() {
		d, _ := digest.FromProto(dir.GetTreeDigest())
		od := execlog.OutputDirectory{Path: dir.GetPath(), Tree: d}
		if rd, err := digest.FromProto(dir.GetRootDirectoryDigest()); err == nil {
			od.Root = rd
		}
		rec.OutputDirectories = append(rec.OutputDirectories, od)
	}
	seen := map[string]bool{}
	for _, ls := range [][]*repb.OutputSymlink{res.GetOutputSymlinks(), res.GetOutputFileSymlinks(), res.GetOutputDirectorySymlinks()} {
		for _, s := range ls {
			if !seen[s.GetPath()] {
				seen[s.GetPath()] = true
				rec.OutputSymlinks = append(rec.OutputSymlinks, execlog.OutputSymlink{Path: s.GetPath(), Target: s.GetTarget()})
			}
		}
	}
	if d, err := digest.FromProto(res.GetStdoutDigest()); err == nil {
		rec.Stdout = d
	}
	if d, err := digest.FromProto(res.GetStderrDigest()); err == nil {
		rec.Stderr = d
	}
	if m := t.Metadata; m != nil {
		rec.Request = &execlog.RequestMetadata{
			ToolName:                m.GetToolDetails().GetToolName(),
			ToolVersion:             m.GetToolDetails().GetToolVersion(),
			ToolInvocationID:        m.GetToolInvocationId(),
			CorrelatedInvocationsID: m.GetCorrelatedInvocationsId(),
			ActionID:                m.GetActionId(),
			TargetID:                m.GetTargetId(),
			ActionMnemonic:          m.GetActionMnemonic(),
			ConfigurationID:         m.GetConfigurationId(),
		}
	}
	return rec
}

func workerName(host string, i int) string { return fmt.Sprintf("%s/worker-%d", host, i) }
