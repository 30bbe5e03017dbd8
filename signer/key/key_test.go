package key_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmark-build/hallmark/signer/dsse"
	"github.com/hallmark-build/hallmark/signer/key"
)

func TestGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	id, err := key.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	privPath := filepath.Join(dir, key.PrivateKeyFile)
	st, err := os.Stat(privPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("signer.key mode = %04o, want 0600", st.Mode().Perm())
	}
	pubData, err := os.ReadFile(filepath.Join(dir, key.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(pubData), "-----BEGIN PUBLIC KEY-----") {
		t.Errorf("signer.pub is not PEM PKIX: %q", pubData)
	}
	s, err := key.LoadFile(privPath)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != id {
		t.Errorf("loaded key id %s, generated %s", s.KeyID(), id)
	}
	pub, err := key.LoadPublicFile(filepath.Join(dir, key.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := dsse.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyID() != id {
		t.Errorf("public key id %s, want %s", v.KeyID(), id)
	}
	msg := []byte("message")
	sig, err := s.Sign(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(msg, sig); err != nil {
		t.Errorf("signature does not verify with signer.pub: %v", err)
	}
	if err := v.Verify([]byte("other"), sig); err == nil {
		t.Error("signature verifies over a different message")
	}
	t.Run("RefusesOverwrite", func(t *testing.T) {
		if _, err := key.Generate(dir); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("second Generate error = %v, want already exists", err)
		}
	})
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := key.Generate(dir); err != nil {
		t.Fatal(err)
	}
	privPath := filepath.Join(dir, key.PrivateKeyFile)
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		wantErr error
	}{
		{"Owner", 0o600, nil},
		{"OwnerReadOnly", 0o400, nil},
		{"GroupReadable", 0o640, key.ErrInsecurePermissions},
		{"OtherReadable", 0o604, key.ErrInsecurePermissions},
		{"GroupWritable", 0o620, key.ErrInsecurePermissions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.Chmod(privPath, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := key.LoadFile(privPath)
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("LoadFile with mode %04o: err = %v, want %v", tc.mode, err, tc.wantErr)
			}
		})
	}
	t.Run("NotAKey", func(t *testing.T) {
		p := filepath.Join(dir, "junk.key")
		if err := os.WriteFile(p, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := key.LoadFile(p); err == nil || !strings.Contains(err.Error(), "want \"PRIVATE KEY\"") {
			t.Errorf("err = %v, want PEM type complaint", err)
		}
	})
}

// TestKeyIDMatchesSSHKeygen checks the documented recipe: the key id is what
// ssh-keygen prints as the SHA-256 fingerprint of signer.pub.
func TestKeyIDMatchesSSHKeygen(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	dir := t.TempDir()
	id, err := key.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := exec.Command("ssh-keygen", "-i", "-m", "PKCS8", "-f", filepath.Join(dir, key.PublicKeyFile)).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -i: %v", err)
	}
	cmd := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", "-")
	cmd.Stdin = strings.NewReader(string(sshPub))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ssh-keygen -l: %v", err)
	}
	if fields := strings.Fields(string(out)); len(fields) < 2 || fields[1] != id {
		t.Errorf("ssh-keygen fingerprint %q, key id %q", out, id)
	}
}
