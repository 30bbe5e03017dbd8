package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/builder/sandbox"
)

const testUID = 61990

func newRunner(t *testing.T) *sandbox.Bwrap {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bwrap not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("the bwrap runner test runs bwrap as a separate uid and needs root")
	}
	r, err := sandbox.NewBwrap(sandbox.WithCgroupName("hallmark-sandbox-test-" + strings.ReplaceAll(t.Name(), "/", "-")))
	if err != nil {
		t.Fatalf("NewBwrap: %v", err)
	}
	return r
}

// tempRoot returns an input root searchable by the sandbox uid, with an
// "out" directory owned by it.
func tempRoot(t *testing.T) (root, stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root = filepath.Join(dir, "root")
	must(t, os.MkdirAll(filepath.Join(root, "out"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "input.txt"), []byte("hello\n"), 0o444))
	must(t, os.Chown(filepath.Join(root, "out"), testUID, testUID))
	must(t, os.Chmod(root, 0o555))
	return root, filepath.Join(dir, "stdout"), filepath.Join(dir, "stderr")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, r sandbox.Runner, script string, lim sandbox.Limits) (sandbox.Result, string, string) {
	t.Helper()
	root, so, se := tempRoot(t)
	res, err := r.Run(context.Background(), sandbox.Spec{
		Args:      []string{"/bin/sh", "-c", script},
		Env:       []string{"PATH=/usr/bin:/bin"},
		InputRoot: root,
		Writable:  []string{"out"},
		Stdout:    so,
		Stderr:    se,
		UID:       testUID,
		GID:       testUID,
		Limits:    lim,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	o, _ := os.ReadFile(so)
	e, _ := os.ReadFile(se)
	return res, string(o), string(e)
}

func TestBwrapIsolation(t *testing.T) {
	r := newRunner(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	home, _ := os.UserHomeDir()
	tests := []struct {
		name     string
		script   string
		wantExit int // -1: any non-zero
		wantOut  string
	}{
		{"ok", "cat input.txt > out/x && cat out/x && pwd", 0, "hello\n" + sandbox.ExecRoot + "\n"},
		{"tcp to host", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", port), -1, ""},
		{"write input root", "echo x > new.txt", -1, ""},
		{"modify input", "echo x >> input.txt", -1, ""},
		{"chmod input", "chmod 666 input.txt", -1, ""},
		{"ls /root", "ls /root", -1, ""},
		{"write the sandbox root", "touch /foo", -1, ""},
		{"write next to the input root", "touch /hallmark/foo", -1, ""},
		{"ls home", "ls " + home, -1, ""},
		{"no /home", "test -e /home", -1, ""},
		{"uid", "id -u", 0, "1000\n"},
		{"pid ns", "echo $$", 0, "2\n"},
		{"tmp writable", "echo x > /tmp/y && cat /tmp/y", 0, "x\n"},
		{"no userns", "unshare -U true", -1, ""},
		{"env exact", "env | sort", 0, "PATH=/usr/bin:/bin\nPWD=" + sandbox.ExecRoot + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// bash for /dev/tcp; dash elsewhere is fine too.
			res, out, errOut := run(t, r, tc.script, sandbox.Limits{Timeout: 20 * time.Second})
			if tc.wantExit == -1 && res.ExitCode == 0 || tc.wantExit >= 0 && res.ExitCode != tc.wantExit {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", res.ExitCode, tc.wantExit, out, errOut)
			}
			if tc.wantOut != "" && out != tc.wantOut {
				t.Errorf("stdout %q, want %q (stderr %q)", out, tc.wantOut, errOut)
			}
		})
	}
}

func TestBwrapTCPWithBash(t *testing.T) {
	r := newRunner(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	root, so, se := tempRoot(t)
	res, err := r.Run(context.Background(), sandbox.Spec{
		Args: []string{"/bin/bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d && echo connected", port)},
		Env:  []string{"PATH=/usr/bin:/bin"}, InputRoot: root, Stdout: so, Stderr: se, UID: testUID, GID: testUID,
	})
	must(t, err)
	out, _ := os.ReadFile(so)
	if res.ExitCode == 0 || strings.Contains(string(out), "connected") {
		t.Fatalf("connection to the host's port %d succeeded from the sandbox (exit %d)", port, res.ExitCode)
	}
}

func TestBwrapLimits(t *testing.T) {
	r := newRunner(t)
	t.Run("timeout kills tree", func(t *testing.T) {
		marker := fmt.Sprintf("hallmark-timeout-%d", time.Now().UnixNano())
		start := time.Now()
		res, _, _ := run(t, r, "(sleep 1000; echo "+marker+") & (sh -c 'sleep 999 # "+marker+"' &) ; sleep 1000", sandbox.Limits{Timeout: 300 * time.Millisecond})
		if res.Killed != sandbox.Timeout {
			t.Errorf("Killed = %q, want timeout", res.Killed)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %v", d)
		}
		if left := processesWith(marker); len(left) > 0 {
			t.Errorf("processes left after timeout: %v", left)
		}
	})
	t.Run("fork bomb", func(t *testing.T) {
		res, _, _ := run(t, r, "f() { f | f & }; f; sleep 2", sandbox.Limits{Timeout: 10 * time.Second, Processes: 64})
		if !res.ProcessLimitHit {
			t.Errorf("ProcessLimitHit false; result %+v", res)
		}
	})
	t.Run("file size", func(t *testing.T) {
		res, _, _ := run(t, r, "head -c 100000 /dev/zero > out/big", sandbox.Limits{FileSizeBytes: 4096})
		if res.ExitCode == 0 {
			t.Errorf("writing 100000 bytes with a 4096 byte limit succeeded")
		}
	})
	t.Run("memory", func(t *testing.T) {
		res, _, _ := run(t, r, "head -c 300000000 /dev/zero | tail -c 200000000 > /dev/null", sandbox.Limits{MemoryBytes: 64 << 20, Timeout: 30 * time.Second})
		if res.ExitCode == 0 || res.Killed != sandbox.Memory {
			t.Errorf("result %+v, want killed for memory", res)
		}
	})
	t.Run("tmp size", func(t *testing.T) {
		res, _, _ := run(t, r, "head -c 2000000 /dev/zero > /tmp/big", sandbox.Limits{TmpBytes: 1 << 20})
		if res.ExitCode == 0 {
			t.Errorf("writing 2 MB into a 1 MiB /tmp succeeded")
		}
	})
}

func TestBwrapCancel(t *testing.T) {
	r := newRunner(t)
	root, so, se := tempRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	marker := fmt.Sprintf("hallmark-cancel-%d", time.Now().UnixNano())
	res, err := r.Run(ctx, sandbox.Spec{
		Args: []string{"/bin/sh", "-c", "sleep 1000 # " + marker}, InputRoot: root,
		Stdout: so, Stderr: se, UID: testUID, GID: testUID,
	})
	if !errors.Is(err, context.Canceled) || res.Killed != sandbox.Cancelled {
		t.Fatalf("Run = %+v, %v; want cancelled", res, err)
	}
	if left := processesWith(marker); len(left) > 0 {
		t.Errorf("processes left after cancel: %v", left)
	}
}

func TestSpecValidate(t *testing.T) {
	good := sandbox.Spec{Args: []string{"x"}, InputRoot: "/r", UID: 5, GID: 5}
	tests := []struct {
		name string
		mod  func(*sandbox.Spec)
	}{
		{"no args", func(s *sandbox.Spec) { s.Args = nil }},
		{"root uid", func(s *sandbox.Spec) { s.UID = 0 }},
		{"relative root", func(s *sandbox.Spec) { s.InputRoot = "r" }},
		{"dotdot workdir", func(s *sandbox.Spec) { s.WorkingDir = "a/../.." }},
		{"absolute writable", func(s *sandbox.Spec) { s.Writable = []string{"/etc"} }},
		{"bad env", func(s *sandbox.Spec) { s.Env = []string{"=x"} }},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.mod(&s)
			if err := s.Validate(); !errors.Is(err, sandbox.ErrInvalidSpec) {
				t.Errorf("Validate = %v, want ErrInvalidSpec", err)
			}
		})
	}
}

// processesWith returns the pids whose command line contains marker.
func processesWith(marker string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), marker) && e.Name() != fmt.Sprint(os.Getpid()) {
			out = append(out, e.Name()+":"+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}
