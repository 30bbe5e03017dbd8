package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/builder/sandbox"
)

// runscForTest finds a runsc: $HALLMARK_RUNSC, the one the Makefile builds
// into .cache/runsc (make runsc) or runsc in PATH.
// Debian 12's runsc (release 20221219) rejects statx with AT_NO_AUTOMOUNT,
// which coreutils' ls and stat pass; tests skip it.
func runscForTest(t *testing.T) string {
	t.Helper()
	found := ""
	for _, p := range []string{os.Getenv("HALLMARK_RUNSC"), "../../.cache/runsc/runsc"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			found, _ = filepath.Abs(p)
			break
		}
	}
	if found == "" {
		p, err := exec.LookPath("runsc")
		if err != nil {
			t.Skip("runsc is not installed (run make runsc or set HALLMARK_RUNSC, see docs/tenancy.md)")
		}
		found = p
	}
	if out, _ := exec.Command(found, "--version").Output(); strings.Contains(string(out), "20221219") {
		t.Skipf("%s is runsc 20221219 (Debian 12), which rejects statx(AT_NO_AUTOMOUNT), so ls and stat fail; run make runsc or set HALLMARK_RUNSC to a current runsc (docs/tenancy.md)", found)
	}
	return found
}

// probeRunsc skips when runsc cannot start a sandbox on this host at all.
func probeRunsc(t *testing.T, p string) {
	t.Helper()
	cmd := exec.Command(p, "--network=none", "--root="+t.TempDir(), "do", "/bin/true")
	cmd.Dir = t.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("%s cannot start a sandbox on this host: %v: %s", p, err, strings.TrimSpace(string(out)))
	}
}

func TestGVisorShellToolsAndIsolation(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{
		{"Cold", context.Background()},
		{"Warm", sandbox.WithReuseKey(context.Background(), "tenant-a")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testGVisorShellTools(t, tc.ctx)
		})
	}
}

func testGVisorShellTools(t *testing.T, ctx context.Context) {
	if os.Geteuid() != 0 {
		t.Skip("runsc needs root here")
	}
	runsc := runscForTest(t)
	probeRunsc(t, runsc)
	g, err := sandbox.NewGVisor(sandbox.WithRunscPath(runsc), sandbox.WithGVisorStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	secret := filepath.Join(dir, "secret.txt")
	os.WriteFile(secret, []byte("host secret"), 0o644)
	root := filepath.Join(dir, "root")
	os.Mkdir(root, 0o755)
	os.WriteFile(filepath.Join(root, "in.txt"), []byte("hello\n"), 0o644)
	out := filepath.Join(root, "out")
	os.Mkdir(out, 0o755)
	os.Chown(out, 61000, 61000)
	script := `set -e
ls -l in.txt
ls -la . >/dev/null
stat -c '%s' in.txt
stat in.txt >/dev/null
cat in.txt
cp in.txt out/copy.txt
mkdir -p out/d/e
printf 'b\na\nc\n' | sort | tr 'abc' 'xyz' > out/d/e/sorted.txt
find . -name '*.txt' | sort
for p in /proc/[0-9]*; do echo "proc: $(cat $p/comm)"; done
if cat ` + secret + ` 2>/dev/null; then echo SECRET-VISIBLE; fi
if echo x > in2.txt 2>/dev/null; then echo INPUT-WRITABLE; fi
if [ -e /proc/1/root/etc/shadow ] && cat /proc/1/root/etc/shadow 2>/dev/null; then echo SHADOW; fi
`
	res, err := g.Run(ctx, sandbox.Spec{Args: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"},
		InputRoot: root, Writable: []string{"out"}, Stdout: filepath.Join(dir, "o"), Stderr: filepath.Join(dir, "e"),
		UID: 61000, GID: 61000, Limits: sandbox.Limits{Timeout: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	o, _ := os.ReadFile(filepath.Join(dir, "o"))
	e, _ := os.ReadFile(filepath.Join(dir, "e"))
	if res.ExitCode != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.ExitCode, o, e)
	}
	for _, want := range []string{"in.txt", "\n6\n", "hello", "./out/copy.txt"} {
		if !strings.Contains(string(o), want) {
			t.Errorf("stdout lacks %q:\n%s\nstderr:\n%s", want, o, e)
		}
	}
	for _, bad := range []string{"SECRET-VISIBLE", "INPUT-WRITABLE", "SHADOW"} {
		if strings.Contains(string(o), bad) {
			t.Errorf("sandbox escape: %s\n%s", bad, o)
		}
	}
	// Only the sandbox's own processes: the shell and the tools it runs,
	// never the host's (this test binary, go, init).
	procs := 0
	for _, line := range strings.Split(string(o), "\n") {
		comm, ok := strings.CutPrefix(line, "proc: ")
		if !ok {
			continue
		}
		procs++
		if comm != "sh" && comm != "cat" {
			t.Errorf("the action sees a process that is not its own: %q\n%s", comm, o)
		}
	}
	if procs == 0 || procs > 3 {
		t.Errorf("the action sees %d processes, want 1 to 3 (its own):\n%s", procs, o)
	}
	if b, err := os.ReadFile(filepath.Join(out, "d", "e", "sorted.txt")); err != nil || string(b) != "x\ny\nz\n" {
		t.Errorf("mkdir/sort/tr output: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "copy.txt")); err != nil || string(b) != "hello\n" {
		t.Errorf("output not written through: %q %v", b, err)
	}
}

// TestGVisorWarmSandboxes: runs under the same reuse key and uid share a
// warm sandbox (one gVisor kernel, so one kernel log), a second key gets its
// own, no run sees another's files or /tmp, and a warm run is cheaper than
// a cold one.
func TestGVisorWarmSandboxes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runsc needs root here")
	}
	runsc := runscForTest(t)
	probeRunsc(t, runsc)
	g, err := sandbox.NewGVisor(sandbox.WithRunscPath(runsc), sandbox.WithGVisorStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	run := func(ctx context.Context, name, script string) (string, time.Duration) {
		t.Helper()
		root := filepath.Join(dir, name)
		os.Mkdir(root, 0o755)
		os.WriteFile(filepath.Join(root, name+".txt"), []byte(name), 0o644)
		stdout := filepath.Join(dir, name+".out")
		res, err := g.Run(ctx, sandbox.Spec{Args: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"},
			InputRoot: root, Stdout: stdout, UID: 61000, GID: 61000, Limits: sandbox.Limits{Timeout: time.Minute}})
		o, _ := os.ReadFile(stdout)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %+v %v\n%s", name, res, err, o)
		}
		return string(o), res.WallTime
	}
	a := sandbox.WithReuseKey(context.Background(), "tenant-a")
	b := sandbox.WithReuseKey(context.Background(), "tenant-b")
	script := `dmesg | md5sum; ls; ls /tmp; echo x > /tmp/mark`
	a1, _ := run(a, "a1", script)
	a2, warm := run(a, "a2", script)
	b1, _ := run(b, "b1", script)
	_, cold := run(context.Background(), "c1", script)
	boot := func(out string) string { return strings.SplitN(out, "\n", 2)[0] }
	if boot(a1) == "" || boot(a1) != boot(a2) {
		t.Errorf("two runs under one key did not share the warm sandbox: kernel logs %q and %q", boot(a1), boot(a2))
	}
	if boot(b1) == boot(a1) {
		t.Errorf("two keys share one sandbox (kernel log %q)", boot(b1))
	}
	if strings.Contains(a2, "a1.txt") || strings.Contains(a2, "mark") || !strings.Contains(a2, "a2.txt") {
		t.Errorf("the second warm run sees the first one's files or /tmp:\n%s", a2)
	}
	t.Logf("one /bin/sh action: warm %v, cold %v", warm, cold)
	if warm >= cold {
		t.Errorf("a warm run (%v) is not cheaper than a cold one (%v)", warm, cold)
	}
}

func TestGVisorTimeout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runsc needs root here")
	}
	runsc := runscForTest(t)
	probeRunsc(t, runsc)
	g, err := sandbox.NewGVisor(sandbox.WithRunscPath(runsc), sandbox.WithGVisorStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	for _, ctx := range []context.Context{context.Background(), sandbox.WithReuseKey(context.Background(), "t")} {
		res, err := g.Run(ctx, sandbox.Spec{Args: []string{"/bin/sleep", "60"}, InputRoot: dir, UID: 61000, GID: 61000,
			Limits: sandbox.Limits{Timeout: 2 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Killed != sandbox.Timeout || res.WallTime > 30*time.Second {
			t.Errorf("got %+v, want killed for timeout soon after 2s", res)
		}
	}
	// The warm sandbox survives a killed action.
	res, err := g.Run(sandbox.WithReuseKey(context.Background(), "t"), sandbox.Spec{Args: []string{"/bin/true"}, InputRoot: dir, UID: 61000, GID: 61000})
	if err != nil || res.ExitCode != 0 {
		t.Errorf("a warm run after a timed-out one: %+v %v", res, err)
	}
}

// TestGVisorStaleWarmSandboxes: a runner started on the state directory of
// one that was never closed (a killed farm) deletes the sandboxes it left.
func TestGVisorStaleWarmSandboxes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runsc needs root here")
	}
	runsc := runscForTest(t)
	probeRunsc(t, runsc)
	state := t.TempDir()
	g1, err := sandbox.NewGVisor(sandbox.WithRunscPath(runsc), sandbox.WithGVisorStateDir(state))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	res, err := g1.Run(sandbox.WithReuseKey(context.Background(), "t"), sandbox.Spec{Args: []string{"/bin/true"}, InputRoot: dir, UID: 61000, GID: 61000})
	if err != nil || res.ExitCode != 0 {
		t.Fatal(res, err)
	}
	list := func() string {
		out, err := exec.Command(runsc, "--root="+filepath.Join(state, "runsc"), "list", "--quiet").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	if list() == "" {
		t.Fatal("no warm sandbox is running after a warm run")
	}
	g2, err := sandbox.NewGVisor(sandbox.WithRunscPath(runsc), sandbox.WithGVisorStateDir(state))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g2.Close() })
	if l := list(); l != "" {
		t.Errorf("containers left after a new runner started on the state directory: %s", l)
	}
}

func TestNewGVisorRefusesDebianRunsc(t *testing.T) {
	out, err := exec.Command("/usr/bin/runsc", "--version").Output()
	if err != nil || !strings.Contains(string(out), "20221219") {
		t.Skip("/usr/bin/runsc is not Debian 12's runsc 20221219")
	}
	_, err = sandbox.NewGVisor(sandbox.WithRunscPath("/usr/bin/runsc"), sandbox.WithGVisorStateDir(t.TempDir()))
	if err == nil || !strings.Contains(err.Error(), "make runsc") || !strings.Contains(err.Error(), "statx") {
		t.Errorf("NewGVisor with Debian's runsc: %v, want a refusal naming statx and make runsc", err)
	}
}

// TestGVisorWarmSandboxRuns: a warm sandbox is replaced after its number of
// runs, a failing action on its last run is not run twice, and 0 turns warm
// sandboxes off.
func TestGVisorWarmSandboxRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runsc needs root here")
	}
	runsc := runscForTest(t)
	probeRunsc(t, runsc)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o777)
	os.Chmod(out, 0o777)
	kernels := func(runs int, scripts ...string) []string {
		g, err := sandbox.NewGVisor(sandbox.WithRunscPath(runsc), sandbox.WithGVisorStateDir(t.TempDir()), sandbox.WithWarmSandboxRuns(runs))
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		var logs []string
		for i, script := range scripts {
			stdout := filepath.Join(dir, fmt.Sprintf("k%d-%d", runs, i))
			res, err := g.Run(sandbox.WithReuseKey(context.Background(), "t"), sandbox.Spec{Args: []string{"/bin/sh", "-c", script},
				Env: []string{"PATH=/usr/bin:/bin"}, InputRoot: dir, Writable: []string{"out"}, Stdout: stdout, UID: 61000, GID: 61000})
			if err != nil {
				t.Fatal(err)
			}
			if want := 0; strings.Contains(script, "exit 3") {
				want = 3
				if res.ExitCode != want {
					t.Errorf("exit %d, want %d", res.ExitCode, want)
				}
			} else if res.ExitCode != want {
				t.Fatalf("exit %d", res.ExitCode)
			}
			o, _ := os.ReadFile(stdout)
			logs = append(logs, string(o))
		}
		return logs
	}
	k := `dmesg | md5sum`
	got := kernels(2, k, k+"; echo x >> out/count; exit 3", k)
	if got[0] != got[1] || got[1] == got[2] {
		t.Errorf("with 2 runs per warm sandbox, kernels %q: want the first two equal and the third new", got)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "count")); string(b) != "x\n" {
		t.Errorf("the failing last run ran %d times, want once", strings.Count(string(b), "x"))
	}
	got = kernels(0, k, k)
	if got[0] == got[1] {
		t.Errorf("with warm sandboxes off, two runs share a kernel: %q", got)
	}
}
