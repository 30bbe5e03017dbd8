package main_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/signer/key"
	"github.com/hallmark-build/hallmark/signer/provenance"
	"github.com/hallmark-build/hallmark/signer/service"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// hallmarkBin builds this command once per test run.
func hallmarkBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hallmark-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "hallmark")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("building hallmark: %v", buildErr)
	}
	return binPath
}

func hallmark(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(hallmarkBin(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// signerTracer is a fake Tracer: it refuses with refuseErr, or returns a
// small verified trace.
type signerTracer struct{ refuseErr error }

func (f signerTracer) Trace(ctx context.Context, q service.Query) (*service.Trace, error) {
	if f.refuseErr != nil {
		return nil, f.refuseErr
	}
	return &service.Trace{
		Actions: []provenance.Action{{
			Digest: digest.OfBytes([]byte("link")), Mnemonic: "GoLink",
			Arguments: []string{"go", "tool", "link", "-o", "bin"}, Environment: []provenance.EnvVar{{Name: "GOOS", Value: "linux"}},
		}},
		ThirdParty:  []provenance.ThirdParty{{Name: "go_sdk", TreeDigest: digest.OfBytes([]byte("sdk")), Allowed: true}},
		Counts:      provenance.Counts{Source: 2, Generated: 1, ThirdParty: 10, ClientWritten: 1},
		ClientFiles: []provenance.ClientInput{{Path: "bazel-out/k8-fastbuild/bin/bin-0.params", Digest: digest.OfBytes([]byte("-o\nbin\n")), Content: []byte("-o\nbin\n")}},
		StartedOn:   time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC),
		FinishedOn:  time.Date(2025, 5, 1, 10, 1, 0, 0, time.UTC),
	}, nil
}

// fixture is a key pair, a signer serving on a Unix socket, and a git
// repository with one commit and an artifact.
type fixture struct {
	dir, keyDir, socket, artifact, commit string
}

func newFixture(t *testing.T, tr service.Tracer) fixture {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	f := fixture{dir: t.TempDir(), keyDir: t.TempDir()}
	if _, err := key.Generate(f.keyDir); err != nil {
		t.Fatal(err)
	}
	k, err := key.LoadFile(filepath.Join(f.keyDir, key.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := service.New(k, tr)
	if err != nil {
		t.Fatal(err)
	}
	f.socket = filepath.Join(t.TempDir(), "signer.sock")
	lis, err := service.Listen("unix:" + f.socket)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	service.Register(g, srv)
	go g.Serve(lis)
	t.Cleanup(g.Stop)

	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "first"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = f.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	cmd := exec.Command("git", "rev-parse", "HEAD")
	cmd.Dir = f.dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	f.commit = strings.TrimSpace(string(out))
	f.artifact = filepath.Join(f.dir, "hello")
	if err := os.WriteFile(f.artifact, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestKeysGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "k")
	out, err := hallmark(t, ".", "keys", "generate", "--out", dir)
	if err != nil {
		t.Fatalf("keys generate: %v\n%s", err, out)
	}
	st, err := os.Stat(filepath.Join(dir, "signer.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signer.key: %v, mode %v", err, st)
	}
	if !strings.Contains(out, "key id ") {
		t.Errorf("output lacks the key id: %s", out)
	}
	if out, err := hallmark(t, ".", "keys", "generate", "--out", dir); err == nil {
		t.Errorf("second keys generate into the same directory succeeded: %s", out)
	}
}

func TestSignAndVerify(t *testing.T) {
	f := newFixture(t, signerTracer{})
	out, err := hallmark(t, f.dir, "sign", "--signer=unix:"+f.socket, "--tenant=team-a", "--target=//:hello", "hello")
	if err != nil {
		t.Fatalf("sign: %v\n%s", err, out)
	}
	envPath := f.artifact + ".intoto.jsonl"
	data, err := os.ReadFile(envPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(data), "\n") != 1 || !strings.HasPrefix(string(data), "{") {
		t.Errorf("envelope file is not one JSON object on one line")
	}
	pub := filepath.Join(f.keyDir, "signer.pub")
	out, err = hallmark(t, f.dir, "verify", "--key="+pub, "--envelope="+envPath, "hello")
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	for _, want := range []string{
		"VERIFIED hello", f.commit, "https://hallmark.build/farm/local", "tenant team-a",
		"2 source, 1 generated, 10 third-party, 1 client-written",
		"bazel-out/k8-fastbuild/bin/bin-0.params", "//:hello",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}

	t.Run("OtherArtifactRefused", func(t *testing.T) {
		other := filepath.Join(f.dir, "other")
		os.WriteFile(other, []byte("other"), 0o644)
		out, err := hallmark(t, f.dir, "verify", "--key="+pub, "--envelope="+envPath, "other")
		if err == nil || !strings.Contains(out, "is not a subject of the manifest") {
			t.Errorf("verify of another artifact: %v\n%s", err, out)
		}
	})
	t.Run("OtherKeyRefused", func(t *testing.T) {
		kd := t.TempDir()
		if _, err := key.Generate(kd); err != nil {
			t.Fatal(err)
		}
		out, err := hallmark(t, f.dir, "verify", "--key="+filepath.Join(kd, "signer.pub"), "--envelope="+envPath, "hello")
		if err == nil || !strings.Contains(out, "verification failed") {
			t.Errorf("verify with another key: %v\n%s", err, out)
		}
	})
	t.Run("TamperedEnvelopeRefused", func(t *testing.T) {
		bad := filepath.Join(f.dir, "bad.jsonl")
		// Change one payload byte (the base64 alphabet keeps it parseable).
		i := strings.Index(string(data), `"payload":"`) + len(`"payload":"`) + 20
		b := []byte(string(data))
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		os.WriteFile(bad, b, 0o644)
		out, err := hallmark(t, f.dir, "verify", "--key="+pub, "--envelope="+bad, "hello")
		if err == nil || !strings.Contains(out, "FAILED") {
			t.Errorf("verify of a tampered envelope: %v\n%s", err, out)
		}
	})
	t.Run("Cosign", func(t *testing.T) {
		cosign := cosignBin(t)
		cmd := exec.Command(cosign, "verify-blob-attestation", "--key", pub, "--signature", envPath,
			"--type", "slsaprovenance1", "--insecure-ignore-tlog", f.artifact)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cosign verify-blob-attestation: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "Verified OK") {
			t.Errorf("cosign output lacks Verified OK:\n%s", out)
		}
		// And cosign refuses an artifact that is not a subject.
		cmd = exec.Command(cosign, "verify-blob-attestation", "--key", pub, "--signature", envPath,
			"--type", "slsaprovenance1", "--insecure-ignore-tlog", filepath.Join(f.dir, "other"))
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("cosign accepted an artifact that is not a subject:\n%s", out)
		}
	})
}

func TestSignRefusedLeavesNoFile(t *testing.T) {
	f := newFixture(t, signerTracer{refuseErr: errors.New(`source input "main.go" (abc/1) differs from commit`)})
	out, err := hallmark(t, f.dir, "sign", "--signer=unix:"+f.socket, "--commit="+f.commit, "hello")
	if err == nil {
		t.Fatalf("sign succeeded on a refusal:\n%s", out)
	}
	if !strings.Contains(out, "FailedPrecondition") || !strings.Contains(out, `"main.go"`) {
		t.Errorf("sign output does not name the reason:\n%s", out)
	}
	entries, _ := os.ReadDir(f.dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "intoto") {
			t.Errorf("refused sign left %s behind", e.Name())
		}
	}
}

func TestSignNoSigner(t *testing.T) {
	f := newFixture(t, signerTracer{})
	sock := filepath.Join(t.TempDir(), "none.sock")
	out, err := hallmark(t, f.dir, "sign", "--signer=unix:"+sock, "--timeout=5s", "hello")
	if err == nil || !strings.Contains(out, "refused") && !strings.Contains(out, "Unavailable") {
		t.Errorf("sign with no signer: %v\n%s", err, out)
	}
	if _, err := os.Stat(f.artifact + ".intoto.jsonl"); err == nil {
		t.Error("envelope written without a signer")
	}
}

// cosignBin finds cosign v2 on PATH or in GOPATH/bin, or builds it from the
// module proxy (slow; skipped with -short).
func cosignBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		t.Skipf("cosign not found and go env failed: %v", err)
	}
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "cosign")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if testing.Short() {
		t.Skip("cosign not installed; building it is skipped in -short mode")
	}
	cmd := exec.Command("go", "install", "github.com/sigstore/cosign/v2/cmd/cosign@v2.4.1")
	cmd.Dir = os.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cosign v2.4.1 could not be built: %v\n%s", err, out)
	}
	return p
}
