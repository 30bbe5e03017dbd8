package sandbox_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/builder/sandbox"
)

// runscForTest finds a runsc: $HALLMARK_RUNSC, the one the Makefile builds
// into .cache/runsc (make runsc) or /work/cache/runsc, or runsc in PATH.
// Debian 12's runsc (release 20221219) rejects statx with AT_NO_AUTOMOUNT,
// which coreutils' ls and stat pass; tests skip it.
func runscForTest(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("HALLMARK_RUNSC"), "../../.cache/runsc/runsc", "/work/cache/runsc/runsc"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			abs, _ := filepath.Abs(p)
			return abs
		}
	}
	p, err := exec.LookPath("runsc")
	if err != nil {
		t.Skip("runsc is not installed (set HALLMARK_RUNSC or build one, see docs/tenancy.md)")
	}
	if out, _ := exec.Command(p, "--version").Output(); strings.Contains(string(out), "20221219") {
		t.Skip("runsc 20221219 (Debian 12) rejects statx(AT_NO_AUTOMOUNT), so ls and stat fail; run make runsc or set HALLMARK_RUNSC to a current runsc (docs/tenancy.md)")
	}
	return p
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
	res, err := g.Run(context.Background(), sandbox.Spec{Args: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"},
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
	res, err := g.Run(context.Background(), sandbox.Spec{Args: []string{"/bin/sleep", "60"}, InputRoot: dir, UID: 61000, GID: 61000,
		Limits: sandbox.Limits{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Killed != sandbox.Timeout || res.WallTime > 30*time.Second {
		t.Errorf("got %+v, want killed for timeout soon after 2s", res)
	}
}
