// Package bazeltest runs Debian's Bazel 4.2.3 from Go tests, offline.
//
// Require finds bazel (skipping the test with a reason when it is absent),
// prepares the offline environment once per test binary with
// scripts/bazel-env.sh, and returns an Env. Env.Workspace copies a workspace
// into a temporary directory with its own output base; its Run, Build, Test,
// Clean and Shutdown methods run bazel with the offline bazelrc and return the
// output and the parsed process summary (see Stats).
//
// Environment:
//
//	BAZEL                     the bazel binary (default: bazel on PATH)
//	HALLMARK_REQUIRE_BAZEL=1  fail instead of skip when bazel is absent (make test sets it)
//	HALLMARK_BAZELTEST_ROOT   shared output_user_root and repository cache
//	                          (default: <repo>/.hallmark/bazeltest)
package bazeltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Env is a prepared offline Bazel environment, shared by all tests of a binary.
type Env struct {
	// Bazel is the path of the bazel binary.
	Bazel string
	// RepoRoot is the root of the hallmark checkout.
	RepoRoot string
	// Bazelrc is the offline bazelrc written by scripts/bazel-env.sh.
	Bazelrc string
	// OutputUserRoot is shared by all workspaces of all tests.
	OutputUserRoot string
}

var (
	envOnce sync.Once
	envVal  *Env
	envErr  error
)

// Require returns the shared Env. It skips t when bazel is not installed
// (fails instead when HALLMARK_REQUIRE_BAZEL=1) and fails t when the offline
// environment cannot be prepared.
func Require(t testing.TB) *Env {
	t.Helper()
	bazel := os.Getenv("BAZEL")
	if bazel == "" {
		p, err := exec.LookPath("bazel")
		if err != nil {
			if os.Getenv("HALLMARK_REQUIRE_BAZEL") == "1" {
				t.Fatalf("bazel is not installed (apt-get install bazel-bootstrap) and HALLMARK_REQUIRE_BAZEL=1")
			}
			t.Skip("bazel is not installed (apt-get install bazel-bootstrap); skipping Bazel test")
		}
		bazel = p
	}
	envOnce.Do(func() { envVal, envErr = prepare(bazel) })
	if envErr != nil {
		t.Fatalf("preparing the offline Bazel environment: %v", envErr)
	}
	return envVal
}

// RepoRoot returns the root of the hallmark checkout that contains the
// current directory (the directory holding go.mod and scripts/bazel-env.sh).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "bazel-env.sh")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bazeltest: no hallmark checkout (go.mod and scripts/bazel-env.sh) above the current directory")
		}
		dir = parent
	}
}

func prepare(bazel string) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	shared := os.Getenv("HALLMARK_BAZELTEST_ROOT")
	if shared == "" {
		shared = filepath.Join(root, ".hallmark", "bazeltest")
	}
	envDir := filepath.Join(root, ".hallmark", "bazel-env")
	if d := os.Getenv("HALLMARK_BAZEL_ENV"); d != "" {
		envDir = d
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "bazel-env.sh"), "--dir", envDir, "--print")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("scripts/bazel-env.sh: %v\n%s", err, stderr.String())
	}
	rc := strings.TrimSpace(string(out))
	if _, err := os.Stat(rc); err != nil {
		return nil, fmt.Errorf("scripts/bazel-env.sh printed %q, which is not a file: %v", rc, err)
	}
	userRoot := filepath.Join(shared, "user_root")
	if err := os.MkdirAll(userRoot, 0o755); err != nil {
		return nil, err
	}
	return &Env{Bazel: bazel, RepoRoot: root, Bazelrc: rc, OutputUserRoot: userRoot}, nil
}

// Workspace is a copy of a Bazel workspace with its own output base.
type Workspace struct {
	env *Env
	t   testing.TB
	// Dir is the workspace directory (the copy).
	Dir string
	// OutputBase is this workspace's Bazel output base.
	OutputBase string
	// StartupFlags go before the command (after --output_base and --bazelrc).
	StartupFlags []string
	// Timeout bounds each bazel command (default 10 minutes).
	Timeout time.Duration
}

// Workspace copies the workspace at src (absolute, or relative to the
// repository root) into a temporary directory and returns it. The Bazel server
// of the workspace is shut down when the test ends.
func (e *Env) Workspace(t testing.TB, src string) *Workspace {
	t.Helper()
	if !filepath.IsAbs(src) {
		src = filepath.Join(e.RepoRoot, src)
	}
	base := t.TempDir()
	dir := filepath.Join(base, "ws")
	if err := CopyTree(src, dir); err != nil {
		t.Fatalf("copying workspace %s: %v", src, err)
	}
	w := &Workspace{env: e, t: t, Dir: dir, OutputBase: filepath.Join(base, "output_base"), Timeout: 10 * time.Minute}
	t.Cleanup(func() {
		if r := w.Run("shutdown"); r.Err != nil {
			t.Logf("bazel shutdown: %v", r.Err)
		}
	})
	return w
}

// Result is what one bazel command did.
type Result struct {
	// Args are the arguments after the startup flags.
	Args []string
	// Output is stdout and stderr, interleaved.
	Output string
	// ExitCode is bazel's exit code (0 success, 1 build failed, 3 tests failed, ...).
	ExitCode int
	// Err is non-nil when bazel failed to start or exited non-zero.
	Err error
	// Stats is the parsed process summary; StatsErr says why there is none.
	Stats    Stats
	StatsErr error
	// Elapsed is the wall time of the command.
	Elapsed time.Duration
}

// Run runs bazel with args (a command and its flags) in the workspace.
func (w *Workspace) Run(args ...string) *Result {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), w.Timeout)
	defer cancel()
	full := []string{
		"--output_user_root=" + w.env.OutputUserRoot,
		"--output_base=" + w.OutputBase,
		"--bazelrc=" + w.env.Bazelrc,
		"--max_idle_secs=600",
	}
	full = append(full, w.StartupFlags...)
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, w.env.Bazel, full...)
	cmd.Dir = w.Dir
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	start := time.Now()
	err := cmd.Run()
	r := &Result{Args: args, Output: buf.String(), Elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.ExitCode = ee.ExitCode()
		r.Err = fmt.Errorf("bazel %s: exit code %d", strings.Join(args, " "), r.ExitCode)
	case err != nil:
		r.ExitCode = -1
		r.Err = fmt.Errorf("bazel %s: %w", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		r.Err = fmt.Errorf("bazel %s: timed out after %v", strings.Join(args, " "), w.Timeout)
	}
	r.Stats, r.StatsErr = ParseStats(r.Output)
	return r
}

// Build runs "bazel build" with flags (targets included).
func (w *Workspace) Build(flags ...string) *Result {
	w.t.Helper()
	return w.Run(append([]string{"build", "--color=no", "--curses=no"}, flags...)...)
}

// Test runs "bazel test" with flags (targets included).
func (w *Workspace) Test(flags ...string) *Result {
	w.t.Helper()
	return w.Run(append([]string{"test", "--color=no", "--curses=no", "--test_output=errors"}, flags...)...)
}

// Clean runs "bazel clean".
func (w *Workspace) Clean() *Result {
	w.t.Helper()
	return w.Run("clean")
}

// Shutdown stops the workspace's Bazel server.
func (w *Workspace) Shutdown() *Result {
	w.t.Helper()
	return w.Run("shutdown")
}

// Must fails the test with Bazel's output when r failed.
func (r *Result) Must(t testing.TB) *Result {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("%v\n%s", r.Err, tail(r.Output, 60))
	}
	return r
}

// BinPath returns the path of an output under bazel-bin, e.g.
// BinPath("cmd/server/server_/server").
func (w *Workspace) BinPath(rel string) string {
	return filepath.Join(w.Dir, "bazel-bin", filepath.FromSlash(rel))
}

// RemoteFlags returns the flags that make every action of a build run on the
// REAPI server at addr (host:port), with no local fallback.
func RemoteFlags(addr string) []string {
	return []string{
		"--remote_executor=grpc://" + addr,
		"--spawn_strategy=remote",
		"--genrule_strategy=remote",
		"--strategy=remote",
		"--remote_local_fallback=false",
		"--remote_timeout=120",
	}
}

// RemoteCacheFlags returns the flags that use the server at addr only as a
// remote cache (actions run locally, results uploaded).
func RemoteCacheFlags(addr string) []string {
	return []string{"--remote_cache=grpc://" + addr, "--remote_upload_local_results=true", "--remote_timeout=120"}
}

// CopyTree copies the regular files, directories and symlinks under src to
// dst, skipping Bazel's convenience symlinks (bazel-*) at the top.
func CopyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if rel != "." && !strings.Contains(rel, string(filepath.Separator)) && strings.HasPrefix(rel, "bazel-") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return copyFile(path, target, info.Mode().Perm()|0o200)
		default:
			return fmt.Errorf("bazeltest: %s is neither a file, a directory nor a symlink", path)
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
