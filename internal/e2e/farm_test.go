package e2e_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/builder/execlog"
	"github.com/hallmark-build/hallmark/internal/bazeltest"
)

var (
	builderOnce sync.Once
	builderBin  string
	builderSkip string
	builderErr  error
)

// builder returns the hallmark-builder binary: $HALLMARK_BUILDER, or one
// built from ./cmd/hallmark-builder. It skips the test when that command does
// not exist yet and fails it when it does not build.
func builder(t *testing.T) string {
	t.Helper()
	builderOnce.Do(func() {
		if b := os.Getenv("HALLMARK_BUILDER"); b != "" {
			builderBin = b
			return
		}
		root, err := bazeltest.RepoRoot()
		if err != nil {
			builderErr = err
			return
		}
		if _, err := os.Stat(filepath.Join(root, "cmd", "hallmark-builder")); err != nil {
			builderSkip = "cmd/hallmark-builder does not exist yet"
			return
		}
		dir, err := os.MkdirTemp("", "hallmark-e2e-bin-")
		if err != nil {
			builderErr = err
			return
		}
		builderBin = filepath.Join(dir, "hallmark-builder")
		cmd := exec.Command("go", "build", "-o", builderBin, "./cmd/hallmark-builder")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			builderErr = fmt.Errorf("go build ./cmd/hallmark-builder: %v\n%s", err, out)
		}
	})
	if builderSkip != "" {
		t.Skip(builderSkip)
	}
	if builderErr != nil {
		t.Fatal(builderErr)
	}
	return builderBin
}

// farm is one running hallmark-builder process.
type farm struct {
	t       *testing.T
	bin     string
	Addr    string // host:port of the REAPI server
	Data    string // its data directory
	cmd     *exec.Cmd
	log     *syncBuffer
	exited  chan struct{}
	waitErr error
}

// startFarm starts hallmark-builder on a free loopback port with data dir
// data (a new temporary directory when empty) and waits until it accepts
// connections. It is stopped with SIGTERM when the test ends.
func startFarm(t *testing.T, data, addr string) *farm {
	t.Helper()
	bin := builder(t)
	if data == "" {
		// Not t.TempDir(): its directory is mode 0700, and the farm's sandboxes
		// run actions as an unprivileged user who must reach the worker files.
		base, err := os.MkdirTemp("", "hallmark-e2e-farm-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(base, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(base) })
		data = filepath.Join(base, "data")
	}
	if addr == "" {
		addr = freeAddr(t)
	}
	return launchFarm(t, bin, addr, data, "--metrics-listen="+freeAddr(t))
}

// launchFarm starts hallmark-builder listening on addr with data and the
// extra flags, stops it at cleanup, and returns once it accepts connections.
func launchFarm(t *testing.T, bin, addr, data string, extra ...string) *farm {
	t.Helper()
	f := &farm{t: t, bin: bin, Addr: addr, Data: data, log: &syncBuffer{}, exited: make(chan struct{})}
	f.cmd = exec.Command(bin, append([]string{"--listen=" + addr, "--data=" + data}, extra...)...)
	f.cmd.Stdout = f.log
	f.cmd.Stderr = f.log
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() { f.waitErr = f.cmd.Wait(); close(f.exited) }()
	t.Cleanup(func() { f.Stop() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return f
		}
		select {
		case <-f.exited:
			t.Fatalf("hallmark-builder exited before serving (%v):\n%s", f.waitErr, f.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("hallmark-builder did not accept connections on %s within 30s:\n%s", addr, f.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits up to 30 s (then SIGKILL).
func (f *farm) Stop() {
	select {
	case <-f.exited:
		return
	default:
	}
	f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.exited:
	case <-time.After(30 * time.Second):
		f.t.Errorf("hallmark-builder did not exit within 30s of SIGTERM; killing it")
		f.cmd.Process.Kill()
		<-f.exited
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (f *farm) Kill() {
	f.cmd.Process.Kill()
	<-f.exited
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// findLogDir returns the directory under data holding the execution log
// (execlog.FileName), or "" when there is none yet.
func findLogDir(data string) string {
	found := ""
	filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == execlog.FileName {
			found = filepath.Dir(p)
			return fs.SkipAll
		}
		return nil
	})
	return found
}

// logHead opens the farm's execution log read-only, verifies it and returns
// the sequence number of its last complete record (0 when there is no log).
func logHead(t *testing.T, data string) uint64 {
	t.Helper()
	dir := findLogDir(data)
	if dir == "" {
		return 0
	}
	r, err := execlog.OpenReadOnly(dir)
	if err != nil {
		t.Fatalf("execution log under %s does not verify: %v", data, err)
	}
	seq, _ := r.Head()
	if seq > 0 {
		if err := r.Verify(seq); err != nil {
			t.Fatalf("execution log verification: %v", err)
		}
	}
	return seq
}

var (
	hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)
	hex16 = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// checkBlobs verifies that every CAS blob file under data (a file named by
// its SHA-256 in a directory named by the hash's first two characters) holds
// exactly the bytes its name promises: no partial or corrupt blob is visible.
// ActionCache entries (kept under a 16-hex-character namespace directory) are
// keyed by action digest, not content, and are skipped. It returns how many
// blobs it checked.
func checkBlobs(t *testing.T, data string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !hex64.MatchString(d.Name()) {
			return err
		}
		parent := filepath.Dir(p)
		if filepath.Base(parent) != d.Name()[:2] || hex16.MatchString(filepath.Base(filepath.Dir(parent))) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != d.Name() {
			t.Errorf("corrupt blob %s: its content hashes to %s", p, got)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", data, err)
	}
	return n
}
