package main_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/execlog"
	"github.com/hallmark-build/hallmark/signer/key"
	"github.com/hallmark-build/hallmark/signer/service"
	"github.com/hallmark-build/hallmark/signer/signerpb"
)

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hallmark-signer")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func TestSignerProcess(t *testing.T) {
	bin := build(t)
	keyDir := t.TempDir()
	if _, err := key.Generate(keyDir); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(keyDir, key.PrivateKeyFile)
	records := t.TempDir()
	l, err := execlog.Open(filepath.Join(records, "log"))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := os.Mkdir(filepath.Join(records, "cas"), 0o755); err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m", "x"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}

	t.Run("RefusesReadableKey", func(t *testing.T) {
		if err := os.Chmod(keyPath, 0o640); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(keyPath, 0o600)
		out, err := exec.Command(bin, "--key="+keyPath, "--records="+records, "--listen=unix:"+filepath.Join(t.TempDir(), "s")).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "accessible by group or others") {
			t.Fatalf("signer started with a group-readable key: %v\n%s", err, out)
		}
	})
	t.Run("RequiresFlags", func(t *testing.T) {
		out, err := exec.Command(bin, "--key="+keyPath).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--records is required") {
			t.Fatalf("signer started without --records: %v\n%s", err, out)
		}
	})
	t.Run("ServesAndStopsOnSIGTERM", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "signer.sock")
		cmd := exec.Command(bin, "--key="+keyPath, "--records="+records, "--listen=unix:"+sock, "--source-repository="+repo)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "hallmark-signer serving") {
				break
			}
		}
		go func() {
			for sc.Scan() {
			}
		}()
		client, cc, err := service.Dial("unix:" + sock)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pk, err := client.GetPublicKey(ctx, &signerpb.GetPublicKeyRequest{})
		if err != nil {
			t.Fatal(err)
		}
		k, _ := key.LoadFile(keyPath)
		if pk.GetKeyId() != k.KeyID() {
			t.Errorf("key id %s, want %s", pk.GetKeyId(), k.KeyID())
		}
		d := digest.OfBytes([]byte("x"))
		_, err = client.MakeManifest(ctx, &signerpb.MakeManifestRequest{
			Tenant: "t", Commit: strings.Repeat("a", 40),
			Artifacts: []*signerpb.Artifact{{Name: "x", Sha256: d.Hash, SizeBytes: d.Size}},
		})
		if code := status.Code(err); code != codes.FailedPrecondition {
			t.Errorf("MakeManifest on an empty farm: %v, want FailedPrecondition", err)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("signer did not exit cleanly on SIGTERM: %v", err)
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("socket left behind after SIGTERM: %v", err)
		}
	})
}

// TestImportsStaySmall asserts the signer binary links none of the builder's
// servers.
func TestImportsStaySmall(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"/builder/reapi", "/builder/scheduler", "/builder/worker", "/builder/sandbox", "/builder/farm", "/gate/"} {
			if strings.Contains(dep, "hallmark-build/hallmark"+banned) {
				t.Errorf("hallmark-signer imports %s", dep)
			}
		}
	}
}
