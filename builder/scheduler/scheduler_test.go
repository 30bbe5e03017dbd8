package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/scheduler"
)

func task(tenant string, n int) *scheduler.Task {
	return &scheduler.Task{Tenant: tenant, ActionDigest: digest.OfBytes([]byte(fmt.Sprint(tenant, n)))}
}

func TestSubmit(t *testing.T) {
	t.Run("IdenticalActionsMerge", func(t *testing.T) {
		s := scheduler.New(scheduler.Options{})
		a, merged, err := s.Submit(task("x", 1))
		if err != nil || merged {
			t.Fatalf("first submit: merged=%v err=%v", merged, err)
		}
		b, merged, err := s.Submit(task("x", 1))
		if err != nil || !merged || a != b {
			t.Fatalf("second submit: merged=%v same=%v err=%v; want merged into the first", merged, a == b, err)
		}
	})
	t.Run("OtherTenantDoesNotMerge", func(t *testing.T) {
		s := scheduler.New(scheduler.Options{})
		a, _, _ := s.Submit(task("x", 1))
		b := task("y", 1)
		b.ActionDigest = a.Task.ActionDigest
		op, merged, _ := s.Submit(b)
		if merged || op == a {
			t.Fatal("an action of another tenant was merged into the first tenant's operation")
		}
	})
	t.Run("CompletedIsNotMerged", func(t *testing.T) {
		s := scheduler.New(scheduler.Options{})
		a, _, _ := s.Submit(task("x", 1))
		op, _ := s.Next(context.Background(), "w", nil)
		s.Finish(op, scheduler.Outcome{Response: &repb.ExecuteResponse{}})
		b, merged, _ := s.Submit(task("x", 1))
		if merged || a == b {
			t.Fatal("a new request joined a completed operation")
		}
	})
	t.Run("ClosedRefuses", func(t *testing.T) {
		s := scheduler.New(scheduler.Options{})
		s.Close()
		if _, _, err := s.Submit(task("x", 1)); !errors.Is(err, scheduler.ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	})
}

func TestNextIsFairAcrossTenants(t *testing.T) {
	s := scheduler.New(scheduler.Options{})
	for i := 0; i < 1000; i++ {
		s.Submit(task("big", i))
	}
	for i := 0; i < 3; i++ {
		s.Submit(task("small", i))
	}
	small := 0
	for i := 0; i < 6; i++ {
		op, err := s.Next(context.Background(), "w", nil)
		if err != nil {
			t.Fatal(err)
		}
		if op.Task.Tenant == "small" {
			small++
		}
	}
	if small != 3 {
		t.Fatalf("the small tenant got %d of the first 6 slots, want 3 (round-robin)", small)
	}
}

func TestNextHonoursAccept(t *testing.T) {
	s := scheduler.New(scheduler.Options{})
	s.Submit(task("a", 1))
	s.Submit(task("b", 1))
	op, err := s.Next(context.Background(), "w", func(t *scheduler.Task) bool { return t.Tenant == "b" })
	if err != nil || op.Task.Tenant != "b" {
		t.Fatalf("got %v, %v; want tenant b's task", op, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx, "w", func(t *scheduler.Task) bool { return t.Tenant == "b" }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want to wait until the deadline", err)
	}
}

func TestWatchSeesEveryStage(t *testing.T) {
	s := scheduler.New(scheduler.Options{})
	op, _, _ := s.Submit(task("x", 1))
	snap, ch := op.Watch()
	if snap.Stage != repb.ExecutionStage_QUEUED {
		t.Fatalf("stage %v, want QUEUED", snap.Stage)
	}
	go func() {
		o, _ := s.Next(context.Background(), "w1", nil)
		s.Finish(o, scheduler.Outcome{Response: &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: 3}}})
	}()
	<-ch
	for {
		snap, ch = op.Watch()
		if snap.Stage == repb.ExecutionStage_COMPLETED {
			break
		}
		<-ch
	}
	if snap.Worker != "w1" || snap.Outcome.Response.GetResult().GetExitCode() != 3 {
		t.Fatalf("snapshot %+v does not carry the worker and result", snap)
	}
}

func TestCancelQueued(t *testing.T) {
	s := scheduler.New(scheduler.Options{})
	op, _, _ := s.Submit(task("x", 1))
	if err := s.Cancel(op.Name); err != nil {
		t.Fatal(err)
	}
	snap, _ := op.Watch()
	if snap.Stage != repb.ExecutionStage_COMPLETED || !errors.Is(snap.Outcome.Err, context.Canceled) {
		t.Fatalf("after cancel: %+v", snap)
	}
	if st := s.Stats(); st.Queued != 0 {
		t.Fatalf("queue holds %d tasks after cancel", st.Queued)
	}
	if err := s.Cancel("operations/nope"); !errors.Is(err, scheduler.ErrUnknownOperation) {
		t.Fatalf("err = %v, want ErrUnknownOperation", err)
	}
}

func TestCompletedOperationsExpire(t *testing.T) {
	now := time.Unix(1000, 0)
	s := scheduler.New(scheduler.Options{Retain: time.Minute, Now: func() time.Time { return now }})
	op, _, _ := s.Submit(task("x", 1))
	o, _ := s.Next(context.Background(), "w", nil)
	s.Finish(o, scheduler.Outcome{})
	if _, err := s.Lookup(op.Name); err != nil {
		t.Fatalf("just completed operation unknown: %v", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := s.Lookup(op.Name); !errors.Is(err, scheduler.ErrUnknownOperation) {
		t.Fatalf("err = %v after retention, want ErrUnknownOperation", err)
	}
}

func TestNextRechecksAccept(t *testing.T) {
	s := scheduler.New(scheduler.Options{Recheck: 5 * time.Millisecond})
	s.Submit(task("a", 1))
	open := time.Now().Add(30 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	op, err := s.Next(ctx, "w", func(*scheduler.Task) bool { return time.Now().After(open) })
	if err != nil || op == nil {
		t.Fatalf("Next = %v, %v: a time-dependent Accept was not asked again", op, err)
	}
}
