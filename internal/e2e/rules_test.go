package e2e_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/internal/bazeltest"
)

var (
	toolsOnce sync.Once
	toolsDir  string
	toolsErr  error
)

// tools builds hallmark-builder, hallmark-signer and hallmark into one
// directory (once per test binary).
func tools(t *testing.T) string {
	t.Helper()
	toolsOnce.Do(func() {
		root, err := bazeltest.RepoRoot()
		if err != nil {
			toolsErr = err
			return
		}
		if toolsDir, toolsErr = os.MkdirTemp("", "hallmark-e2e-tools-"); toolsErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", toolsDir+"/", "./cmd/hallmark-builder", "./cmd/hallmark-signer", "./cmd/hallmark")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			toolsErr = fmt.Errorf("go build ./cmd/...: %v\n%s", err, out)
		}
	})
	if toolsErr != nil {
		t.Fatal(toolsErr)
	}
	return toolsDir
}

// proc is a started child process with its combined output.
type proc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.stop)
	return p
}

func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitDial waits until network/addr accepts connections.
func waitDial(t *testing.T, p *proc, network, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout(network, addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited before serving:\n%s", p.cmd.Path, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not serve on %s within 30s:\n%s", p.cmd.Path, addr, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signingFarm is a hallmark-builder with a hallmark-signer for one source
// repository.
type signingFarm struct {
	t       *testing.T
	bin     string
	Addr    string
	Data    string
	Sock    string
	Keys    string // signer.key, signer.pub
	Repo    string
	builder *proc
	signer  *proc
}

func startSigningFarm(t *testing.T, repo string) *signingFarm {
	t.Helper()
	bin := tools(t)
	dir := t.TempDir()
	// The sandboxed uids must reach the data directory.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	f := &signingFarm{t: t, bin: bin, Addr: freeAddr(t), Data: filepath.Join(dir, "data"),
		Sock: filepath.Join(dir, "signer.sock"), Keys: filepath.Join(dir, "keys"), Repo: repo}
	if out, err := exec.Command(filepath.Join(bin, "hallmark"), "keys", "generate", "--out="+f.Keys).CombinedOutput(); err != nil {
		t.Fatalf("hallmark keys generate: %v\n%s", err, out)
	}
	f.builder = startProc(t, filepath.Join(bin, "hallmark-builder"), "--listen="+f.Addr, "--data="+f.Data,
		"--metrics-listen=", "--signer=unix:"+f.Sock)
	waitDial(t, f.builder, "tcp", f.Addr)
	f.startSigner()
	return f
}

func (f *signingFarm) startSigner() {
	f.t.Helper()
	f.signer = startProc(f.t, filepath.Join(f.bin, "hallmark-signer"), "--key="+filepath.Join(f.Keys, "signer.key"),
		"--records="+f.Data, "--listen=unix:"+f.Sock, "--source-repository="+f.Repo, "--protected-branch=main",
		"--untenanted-as=default")
	waitDial(f.t, f.signer, "unix", f.Sock)
}

// signed counts the manifests the current signer process signed.
func (f *signingFarm) signed() int { return strings.Count(f.signer.out.String(), "manifest signed") }

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.email=e2e@hallmark.test", "-c", "user.name=e2e"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func gitInit(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	git(t, dir, "init", "-q", "-b", "main", ".")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "initial")
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRulesSignedManifest(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end Bazel test; skipped with -short")
	}
	env := bazeltest.Require(t)
	ws := env.Workspace(t, example)
	// The example as its own repository (as a user's workspace is), with the
	// signer's public key where the gate test expects it.
	// (signer.pub is in the example's .gitignore.)
	gitInit(t, ws.Dir)
	f := startSigningFarm(t, ws.Dir)
	copyFile(t, filepath.Join(f.Keys, "signer.pub"), filepath.Join(ws.Dir, "signer.pub"))
	remote := bazeltest.RemoteFlags(f.Addr)
	targets := []string{"//:manifest", "//:image", "//:gate_test"}

	r := ws.Build(append(remote, targets...)...).Must(t)
	requireAllRemote(t, "build", r)
	envPath := ws.BinPath("manifest.intoto.jsonl")
	envelope, err := os.ReadFile(envPath)
	if err != nil {
		t.Fatalf("the envelope is not a build output: %v", err)
	}
	if f.signed() != 1 {
		t.Fatalf("signer signed %d manifests, want 1:\n%s", f.signed(), f.signer.out.String())
	}
	for _, out := range []string{"image.oci/index.json", "image.oci/oci-layout", "image.manifest.json", "image.digest"} {
		if _, err := os.Stat(ws.BinPath(out)); err != nil {
			t.Errorf("image output %s: %v", out, err)
		}
	}

	t.Run("GateTestPasses", func(t *testing.T) {
		r := ws.Test(append(remote, "//:gate_test")...).Must(t)
		if !strings.Contains(r.Output, "1 test passes") {
			t.Errorf("gate test did not pass:\n%s", r.Output)
		}
	})

	t.Run("VerifiesWithHallmarkAndCosign", func(t *testing.T) {
		bin := filepath.Join(f.bin, "hallmark")
		for _, art := range []string{"image.manifest.json", "cmd/server/server_/server"} {
			out, err := exec.Command(bin, "verify", "--key="+filepath.Join(f.Keys, "signer.pub"), "--envelope="+envPath, ws.BinPath(art)).CombinedOutput()
			if err != nil {
				t.Errorf("hallmark verify %s: %v\n%s", art, err, out)
			}
		}
		cosign := findCosign()
		if cosign == "" {
			t.Skip("cosign is not installed (go install github.com/sigstore/cosign/v2/cmd/cosign@v2.4.1)")
		}
		out, err := exec.Command(cosign, "verify-blob-attestation", "--key="+filepath.Join(f.Keys, "signer.pub"),
			"--signature="+envPath, "--type=slsaprovenance1", "--insecure-ignore-tlog", ws.BinPath("image.manifest.json")).CombinedOutput()
		if err != nil {
			t.Errorf("cosign verify-blob-attestation: %v\n%s", err, out)
		}
	})

	t.Run("HallmarkSignAfterTheBuild", func(t *testing.T) {
		// The user-side path: ask the signer for a manifest of a built
		// artifact, after the build, and verify it.
		out := filepath.Join(t.TempDir(), "server.intoto.jsonl")
		server := ws.BinPath("cmd/server/server_/server")
		cmd := exec.Command(filepath.Join(f.bin, "hallmark"), "sign", "--signer=unix:"+f.Sock, "--tenant=default",
			"--target=//cmd/server", "--out="+out, server)
		cmd.Dir = ws.Dir // --commit defaults to HEAD of this repository
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hallmark sign: %v\n%s", err, b)
		}
		b, err := exec.Command(filepath.Join(f.bin, "hallmark"), "verify", "--key="+filepath.Join(f.Keys, "signer.pub"),
			"--envelope="+out, server).CombinedOutput()
		if err != nil {
			t.Fatalf("hallmark verify: %v\n%s", err, b)
		}
		if !strings.Contains(string(b), git(t, ws.Dir, "rev-parse", "HEAD")) {
			t.Errorf("the summary does not name the commit:\n%s", b)
		}
	})

	t.Run("CleanRebuildIsACacheHit", func(t *testing.T) {
		before := f.signed()
		ws.Clean().Must(t)
		r := ws.Build(append(remote, "//:manifest")...).Must(t)
		if r.Stats.Remote() != 0 {
			t.Errorf("rebuild after clean: %v, want every action from the cache", r.Stats)
		}
		if got := f.signed(); got != before {
			t.Errorf("the signer was asked again after bazel clean (%d manifests, was %d)", got, before)
		}
		again, err := os.ReadFile(envPath)
		if err != nil || !bytes.Equal(again, envelope) {
			t.Errorf("the envelope after clean differs from the first (err %v)", err)
		}
	})

	t.Run("UncommittedChangeIsRefused", func(t *testing.T) {
		src := filepath.Join(ws.Dir, "greeting", "greeting.go")
		orig, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(src, orig, 0o644)
		// A change that reaches the binary: a comment alone compiles to the
		// same artifacts, so the manifest would rightly be a cache hit.
		changed := strings.Replace(string(orig), `"Hello, "`, `"Hi, "`, 1)
		if changed == string(orig) {
			t.Fatal("greeting.go no longer contains \"Hello, \"; update this test")
		}
		if err := os.WriteFile(src, []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		r := ws.Build(append(remote, "//:manifest")...)
		if r.Err == nil {
			t.Fatalf("manifest of an uncommitted change was signed:\n%s", r.Output)
		}
		if !strings.Contains(r.Output, `"greeting/greeting.go"`) || !strings.Contains(r.Output, "not verified in the claimed commit") {
			t.Errorf("the failure does not name the file and the commit:\n%s", r.Output)
		}
		if r := ws.Test(append(remote, "//:gate_test")...); r.Err == nil {
			t.Errorf("the gate test passed with an uncommitted change:\n%s", r.Output)
		}
	})

	t.Run("SignerDownThenRestarted", func(t *testing.T) {
		f.signer.stop()
		// A new commit: a new manifest action, not a cache hit.
		if err := os.WriteFile(filepath.Join(ws.Dir, "NOTES"), []byte("a committed change\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		git(t, ws.Dir, "add", "NOTES")
		git(t, ws.Dir, "commit", "-q", "-m", "notes")
		start := time.Now()
		r := ws.Build(append(remote, "//:manifest")...)
		if r.Err == nil {
			t.Fatalf("manifest built with the signer down:\n%s", r.Output)
		}
		if !strings.Contains(r.Output, "is not reachable") {
			t.Errorf("the failure does not say the signer is not reachable:\n%s", r.Output)
		}
		if d := time.Since(start); d > 2*time.Minute {
			t.Errorf("failing with the signer down took %v", d)
		}
		f.startSigner()
		ws.Build(append(remote, "//:manifest")...).Must(t)
		if f.signed() != 1 {
			t.Errorf("the restarted signer signed %d manifests, want 1", f.signed())
		}
	})
}

func findCosign() string {
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return ""
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "bin", "cosign")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
