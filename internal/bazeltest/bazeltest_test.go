package bazeltest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmark-build/hallmark/internal/bazeltest"
)

// TestGenruleWorkspace builds a one-genrule workspace with the real Bazel,
// checks the output, and that the summary line is parsed.
func TestGenruleWorkspace(t *testing.T) {
	env := bazeltest.Require(t)
	ws := env.Workspace(t, "internal/bazeltest/testdata/genrule_ws")
	r := ws.Build("//:hello").Must(t)
	if r.StatsErr != nil {
		t.Fatalf("no process summary: %v\n%s", r.StatsErr, r.Output)
	}
	if r.Stats.Total == 0 || r.Stats.Local() != 1 {
		t.Errorf("stats %v: want exactly one local process (the genrule)", r.Stats)
	}
	got, err := os.ReadFile(ws.BinPath("hello.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(got)) != "HELLO FROM BAZELTEST" {
		t.Errorf("hello.txt = %q, want the upper-cased input", got)
	}
	// A second build is a no-op: nothing executes.
	r = ws.Build("//:hello").Must(t)
	if r.Stats.Local() != 0 {
		t.Errorf("incremental build ran %d local processes, want 0 (%v)", r.Stats.Local(), r.Stats)
	}
	// A bad target fails with Bazel's exit code 1 and a message naming it.
	r = ws.Build("//:no_such_target")
	if r.Err == nil || !strings.Contains(r.Output, "no_such_target") {
		t.Errorf("building a missing target: err %v, output lacks its name:\n%s", r.Err, r.Output)
	}
}

func TestCopyTreeSkipsConvenienceSymlinks(t *testing.T) {
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "pkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "pkg", "f.txt"), []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent", filepath.Join(src, "bazel-bin")); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if err := bazeltest.CopyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "pkg", "f.txt")); err != nil || string(b) != "x" {
		t.Errorf("copied file: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "bazel-bin")); !os.IsNotExist(err) {
		t.Errorf("bazel-bin was copied (err %v), want it skipped", err)
	}
}
