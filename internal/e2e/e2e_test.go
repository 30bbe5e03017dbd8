package e2e_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/internal/bazeltest"
)

const example = "examples/go_service"

// requireAllRemote fails t unless every process of r ran remotely or inside
// Bazel: none executed on this machine.
func requireAllRemote(t *testing.T, what string, r *bazeltest.Result) {
	t.Helper()
	if r.StatsErr != nil {
		t.Fatalf("%s: %v\n%s", what, r.StatsErr, r.Output)
	}
	if r.Stats.Local() != 0 || r.Stats.Remote()+r.Stats.RemoteCacheHit()+r.Stats.Internal() != r.Stats.Total {
		t.Fatalf("%s: %v: some actions did not run on hallmark", what, r.Stats)
	}
}

func runSelftest(t *testing.T, ws *bazeltest.Workspace) {
	t.Helper()
	out, err := exec.Command(ws.BinPath("cmd/server/server_/server"), "-selftest").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"message":"Hello, hallmark!"`) {
		t.Fatalf("running the built server: %v\n%s", err, out)
	}
}

// TestRemoteExecution: every action of build and test runs on hallmark; the
// binary runs; after bazel clean the rebuild comes from the ActionCache alone.
func TestRemoteExecution(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end Bazel test; skipped with -short")
	}
	env := bazeltest.Require(t)
	f := startFarm(t, "", "")
	remote := bazeltest.RemoteFlags(f.Addr)
	ws := env.Workspace(t, example)

	r := ws.Build(append(remote, "//...")...).Must(t)
	requireAllRemote(t, "cold build", r)
	if r.Stats.Remote() == 0 {
		t.Fatalf("cold build against an empty farm: %v, want remote executions", r.Stats)
	}
	t.Logf("cold build: %v in %v", r.Stats, r.Elapsed)
	runSelftest(t, ws)

	r = ws.Test(append(remote, "//...")...).Must(t)
	requireAllRemote(t, "test", r)
	if r.Stats.Remote() < 3 {
		t.Errorf("test: %v, want the 3 test actions executed remotely", r.Stats)
	}
	if !strings.Contains(r.Output, "3 tests pass") {
		t.Errorf("test output lacks '3 tests pass':\n%s", r.Output)
	}

	ws.Clean().Must(t)
	r = ws.Build(append(remote, "//...")...).Must(t)
	requireAllRemote(t, "rebuild after clean", r)
	if r.Stats.Remote() != 0 || r.Stats.RemoteCacheHit() == 0 {
		t.Fatalf("rebuild after clean: %v, want only remote cache hits and no remote executions", r.Stats)
	}
	t.Logf("warm rebuild: %v in %v", r.Stats, r.Elapsed)
	runSelftest(t, ws)

	f.Stop()
	if n := logHead(t, f.Data); n == 0 {
		t.Errorf("the execution log has no records after a remote build")
	}
	checkBlobs(t, f.Data)
}

// TestRemoteCacheOnly: --remote_cache without --remote_executor: actions run
// locally, results go to hallmark, and a clean rebuild is all cache hits.
func TestRemoteCacheOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end Bazel test; skipped with -short")
	}
	env := bazeltest.Require(t)
	f := startFarm(t, "", "")
	cache := bazeltest.RemoteCacheFlags(f.Addr)
	ws := env.Workspace(t, example)

	r := ws.Build(append(cache, "//...")...).Must(t)
	if r.StatsErr != nil || r.Stats.Local() == 0 {
		t.Fatalf("local build with --remote_cache: %v %v, want local executions", r.Stats, r.StatsErr)
	}
	ws.Clean().Must(t)
	r = ws.Build(append(cache, "//...")...).Must(t)
	if r.StatsErr != nil || r.Stats.Local() != 0 || r.Stats.RemoteCacheHit() == 0 {
		t.Fatalf("rebuild after clean with --remote_cache: %v %v, want only remote cache hits", r.Stats, r.StatsErr)
	}
	runSelftest(t, ws)
}

// TestKillDuringBuild: SIGKILL the farm while it executes the build, restart
// it on the same data dir and port; the build re-runs to success, nothing the
// log had acknowledged is lost, and no corrupt blob is visible.
func TestKillDuringBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end Bazel test; skipped with -short")
	}
	env := bazeltest.Require(t)
	f := startFarm(t, "", "")
	remote := bazeltest.RemoteFlags(f.Addr)
	ws := env.Workspace(t, example)
	// Analyse first, so the build below starts executing at once.
	ws.Build(append(remote, "--nobuild", "//...")...).Must(t)

	done := make(chan *bazeltest.Result, 1)
	go func() { done <- ws.Build(append(remote, "//...")...) }()

	// Kill as soon as the farm has logged its first executed action.
	deadline := time.Now().Add(3 * time.Minute)
	for findLogDir(f.Data) == "" || logHead(t, f.Data) == 0 {
		select {
		case r := <-done:
			t.Fatalf("the build finished (%v, %v) before any executed action was logged; cannot test a kill mid-build", r.Err, r.Stats)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no action was logged within 3 minutes of the build's start:\n%s", f.log.String())
		}
	}
	f.Kill()
	acked := logHead(t, f.Data)
	t.Logf("killed the farm with %d records in its log", acked)

	select {
	case r := <-done:
		t.Logf("the interrupted build ended: %v (%v)", r.Err, r.Stats)
	case <-time.After(5 * time.Minute):
		t.Fatal("the interrupted build did not end within 5 minutes of the farm's death")
	}

	f2 := startFarm(t, f.Data, f.Addr)
	r := ws.Build(append(remote, "//...")...).Must(t)
	requireAllRemote(t, "build after restart", r)
	runSelftest(t, ws)
	f2.Stop()

	if after := logHead(t, f.Data); after < acked {
		t.Errorf("the log had %d records before the kill and %d after the restart: acknowledged records were lost", acked, after)
	}
	if n := checkBlobs(t, f.Data); n == 0 {
		t.Errorf("no CAS blobs found under %s after a remote build", f.Data)
	}
}
