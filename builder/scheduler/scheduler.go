// Package scheduler queues actions for execution, merges identical concurrent
// requests into one operation, serves tenants' queues fairly, and tells every
// waiter about each operation's progress.
//
// Workers pull work with Next and report with Finish; this seam is all a
// worker needs, so workers can later live in other processes.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// ErrClosed is returned once the scheduler is shutting down.
var ErrClosed = errors.New("scheduler is shutting down")

// ErrUnknownOperation is returned for an operation name the scheduler does not know.
var ErrUnknownOperation = errors.New("unknown operation")

// Stage is an operation's execution stage.
type Stage = repb.ExecutionStage_Value

// Task is one action to execute, as the Execution service validated it.
type Task struct {
	Tenant       string // fairness and isolation key; "" for the single-tenant farm
	Instance     string
	ActionDigest digest.Digest
	Action       *repb.Action
	Command      *repb.Command
	Metadata     *repb.RequestMetadata // the client's, may be nil
	DoNotCache   bool
	// Pool names the worker pool that may run the task ("" = any).
	Pool string
}

// key identifies tasks that are merged: the same action for the same tenant
// and instance.
func (t *Task) key() string {
	return t.Tenant + "\x00" + t.Instance + "\x00" + t.ActionDigest.String()
}

// Outcome is what a worker reports for a task.
type Outcome struct {
	Response *repb.ExecuteResponse
	Err      error // infrastructure failure; reported to waiters as the operation's error
}

// Operation is one execution, possibly shared by several Execute calls.
type Operation struct {
	Name string
	Task *Task

	mu       sync.Mutex
	stage    Stage
	queuedAt time.Time
	started  time.Time
	worker   string
	result   *Outcome
	changed  chan struct{} // closed and replaced on every change
	cancel   context.CancelFunc
	ctx      context.Context
	finished time.Time
}

// Snapshot is a consistent view of an operation.
type Snapshot struct {
	Name     string
	Stage    Stage
	Worker   string
	QueuedAt time.Time
	Started  time.Time
	Outcome  *Outcome // set when Stage is COMPLETED
}

// Watch returns the operation's current state and a channel closed at its
// next change.
func (o *Operation) Watch() (Snapshot, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return Snapshot{Name: o.Name, Stage: o.stage, Worker: o.worker, QueuedAt: o.queuedAt, Started: o.started, Outcome: o.result}, o.changed
}

// Context is cancelled when the operation is cancelled or the scheduler stops
// for good; workers run the action under it.
func (o *Operation) Context() context.Context { return o.ctx }

func (o *Operation) setLocked(s Stage) {
	o.stage = s
	close(o.changed)
	o.changed = make(chan struct{})
}

// Options configure a Scheduler.
type Options struct {
	// Retain is how long a completed operation stays known to WaitExecution.
	// Default 10 minutes.
	Retain time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Recheck makes a waiting Next offer the queued tasks to its Accept
	// again at least this often, for Accept functions whose answer changes
	// with time rather than with the queue. Default 0: only on changes.
	Recheck time.Duration
}

// Scheduler is safe for concurrent use.
type Scheduler struct {
	opts Options

	mu       sync.Mutex
	ops      map[string]*Operation // by name
	inflight map[string]*Operation // by task key, queued or executing
	queues   map[string]*tenantQueue
	ring     []string // tenants with queued tasks, served round-robin
	next     int
	wake     chan struct{} // closed when work arrives
	closed   bool
	running  int
	done     []*Operation // completed, oldest first, for expiry
	baseCtx  context.Context
	stopAll  context.CancelFunc
}

type tenantQueue struct {
	tasks []*Operation
}

// New returns an empty scheduler.
func New(opts Options) *Scheduler {
	if opts.Retain <= 0 {
		opts.Retain = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Scheduler{
		opts:     opts,
		ops:      map[string]*Operation{},
		inflight: map[string]*Operation{},
		queues:   map[string]*tenantQueue{},
		wake:     make(chan struct{}),
		baseCtx:  ctx,
		stopAll:  cancel,
	}
}

// Submit queues t, or joins the operation already queued or executing for
// the same action. merged reports the latter.
func (s *Scheduler) Submit(t *Task) (op *Operation, merged bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, ErrClosed
	}
	s.expireLocked()
	if op := s.inflight[t.key()]; op != nil {
		return op, true, nil
	}
	ctx, cancel := context.WithCancel(s.baseCtx)
	op = &Operation{
		Name:     "operations/" + uuid.NewString(),
		Task:     t,
		stage:    repb.ExecutionStage_QUEUED,
		queuedAt: s.opts.Now(),
		changed:  make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
	}
	s.ops[op.Name] = op
	s.inflight[t.key()] = op
	q := s.queues[t.Tenant]
	if q == nil {
		q = &tenantQueue{}
		s.queues[t.Tenant] = q
	}
	if len(q.tasks) == 0 {
		s.ring = append(s.ring, t.Tenant)
	}
	q.tasks = append(q.tasks, op)
	close(s.wake)
	s.wake = make(chan struct{})
	return op, false, nil
}

// Lookup returns the operation with that name.
func (s *Scheduler) Lookup(name string) (*Operation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	op := s.ops[name]
	if op == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownOperation, name)
	}
	return op, nil
}

// Accept decides whether a worker may take a task; nil accepts all.
type Accept func(*Task) bool

// Next blocks until a task that accept admits is queued, marks it executing
// on worker and returns it. Tenants with queued work are served in turn, so
// a tenant with many queued actions cannot starve one with few.
func (s *Scheduler) Next(ctx context.Context, worker string, accept Accept) (*Operation, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		if op := s.takeLocked(accept); op != nil {
			op.mu.Lock()
			op.worker = worker
			op.started = s.opts.Now()
			op.setLocked(repb.ExecutionStage_EXECUTING)
			op.mu.Unlock()
			s.running++
			s.mu.Unlock()
			return op, nil
		}
		wake := s.wake
		s.mu.Unlock()
		var recheck <-chan time.Time
		var timer *time.Timer
		if s.opts.Recheck > 0 {
			timer = time.NewTimer(s.opts.Recheck)
			recheck = timer.C
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
		case <-recheck:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// takeLocked pops the first admissible task, visiting tenants round-robin.
func (s *Scheduler) takeLocked(accept Accept) *Operation {
	n := len(s.ring)
	for i := 0; i < n; i++ {
		idx := (s.next + i) % n
		tenant := s.ring[idx]
		q := s.queues[tenant]
		for j, op := range q.tasks {
			if accept != nil && !accept(op.Task) {
				continue
			}
			q.tasks = append(q.tasks[:j], q.tasks[j+1:]...)
			if len(q.tasks) == 0 {
				s.ring = append(s.ring[:idx], s.ring[idx+1:]...)
				if len(s.ring) > 0 {
					s.next = idx % len(s.ring)
				} else {
					s.next = 0
				}
			} else {
				s.next = (idx + 1) % len(s.ring)
			}
			return op
		}
	}
	return nil
}

// Finish records a worker's outcome and wakes every waiter.
func (s *Scheduler) Finish(op *Operation, out Outcome) {
	s.mu.Lock()
	if s.inflight[op.Task.key()] == op {
		delete(s.inflight, op.Task.key())
	}
	s.running--
	op.finished = s.opts.Now()
	s.done = append(s.done, op)
	s.mu.Unlock()

	op.mu.Lock()
	op.result = &out
	op.setLocked(repb.ExecutionStage_COMPLETED)
	op.mu.Unlock()
	op.cancel()
}

// Cancel cancels a queued or executing operation. Waiters see it complete
// with a CANCELLED status once the worker gives up (at once if it was queued).
func (s *Scheduler) Cancel(name string) error {
	s.mu.Lock()
	op := s.ops[name]
	if op == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrUnknownOperation, name)
	}
	removed := false
	if q := s.queues[op.Task.Tenant]; q != nil {
		for i, o := range q.tasks {
			if o == op {
				q.tasks = append(q.tasks[:i], q.tasks[i+1:]...)
				removed = true
				break
			}
		}
		if removed && len(q.tasks) == 0 {
			s.dropFromRingLocked(op.Task.Tenant)
		}
	}
	if removed {
		delete(s.inflight, op.Task.key())
		op.finished = s.opts.Now()
		s.done = append(s.done, op)
	}
	s.mu.Unlock()
	op.cancel()
	if removed {
		op.mu.Lock()
		op.result = &Outcome{Err: context.Canceled}
		op.setLocked(repb.ExecutionStage_COMPLETED)
		op.mu.Unlock()
	}
	return nil
}

func (s *Scheduler) dropFromRingLocked(tenant string) {
	for i, t := range s.ring {
		if t == tenant {
			s.ring = append(s.ring[:i], s.ring[i+1:]...)
			if s.next > i {
				s.next--
			}
			if len(s.ring) == 0 || s.next >= len(s.ring) {
				s.next = 0
			}
			return
		}
	}
}

// expireLocked forgets completed operations older than Retain.
func (s *Scheduler) expireLocked() {
	cut := s.opts.Now().Add(-s.opts.Retain)
	i := 0
	for ; i < len(s.done) && s.done[i].finished.Before(cut); i++ {
		delete(s.ops, s.done[i].Name)
	}
	if i > 0 {
		s.done = append(s.done[:0], s.done[i:]...)
	}
}

// Stats is a point-in-time view for metrics and progress logs.
type Stats struct {
	Queued    int
	Executing int
	Tenants   map[string]int // queued per tenant
}

// Stats returns the current queue state.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Executing: s.running, Tenants: map[string]int{}}
	for t, q := range s.queues {
		st.Queued += len(q.tasks)
		if len(q.tasks) > 0 {
			st.Tenants[t] = len(q.tasks)
		}
	}
	return st
}

// Close stops handing out work: Next returns ErrClosed, Submit refuses, and
// queued operations complete as unavailable. Executing operations are left
// to their workers; call Abort to cancel them too.
func (s *Scheduler) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	var queued []*Operation
	for _, q := range s.queues {
		queued = append(queued, q.tasks...)
		q.tasks = nil
	}
	s.ring = nil
	for _, op := range queued {
		delete(s.inflight, op.Task.key())
	}
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
	for _, op := range queued {
		op.mu.Lock()
		op.result = &Outcome{Err: ErrClosed}
		op.setLocked(repb.ExecutionStage_COMPLETED)
		op.mu.Unlock()
		op.cancel()
	}
}

// Abort cancels every executing operation's context.
func (s *Scheduler) Abort() { s.stopAll() }

// TenantQueued returns how many of a tenant's tasks wait in the queue.
func (s *Scheduler) TenantQueued(tenant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.queues[tenant]; q != nil {
		return len(q.tasks)
	}
	return 0
}
