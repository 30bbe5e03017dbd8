// Package publishtest holds test fixtures for publishing and gating: a
// signing key, signed hallmark manifests, OCI image layouts and registries
// (go-containerregistry's in-process one and Debian's docker-registry).
//
// It is for tests only; the key it makes is a throwaway P-256 key.
package publishtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/signer/dsse"
	"github.com/hallmark-build/hallmark/signer/provenance"
)

// Key is a throwaway ECDSA P-256 signing key implementing dsse.Signer.
type Key struct {
	Priv *ecdsa.PrivateKey
	id   string
}

// NewKey makes a key.
func NewKey(t testing.TB) *Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := dsse.KeyID(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return &Key{Priv: k, id: id}
}

// KeyID implements dsse.Signer.
func (k *Key) KeyID() string { return k.id }

// Sign implements dsse.Signer: ASN.1 ECDSA over SHA-256, as cosign expects.
func (k *Key) Sign(_ context.Context, msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, k.Priv, h[:])
}

// PublicPEM is the PKIX public key in PEM.
func (k *Key) PublicPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.Priv.PublicKey)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// WritePublic writes the public key PEM into dir and returns its path.
func (k *Key) WritePublic(t testing.TB, dir string) string {
	t.Helper()
	// Key ids are SSH fingerprints ("SHA256:" + base64, which has '/'):
	// name the file by the hex of the id's hash instead.
	sum := sha256.Sum256([]byte(k.id))
	p := filepath.Join(dir, "signer-"+hex.EncodeToString(sum[:4])+".pub")
	if err := os.WriteFile(p, k.PublicPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Builder is the builder id the fixture manifests carry.
const Builder = "https://hallmark.build/farm/test"

// Repository is the source repository the fixture manifests carry.
const Repository = "https://git.example.com/mono"

// Facts returns provenance facts for an artifact with the given sha256 hex
// digest and size, built from //services/frontend.
func Facts(hash string, size int64, finished time.Time) provenance.Facts {
	return provenance.Facts{
		Artifacts:    []provenance.Artifact{{Name: "services/frontend/image", Digest: digest.MustNew(hash, size)}},
		Targets:      []string{"//services/frontend:image"},
		Repository:   Repository,
		Commit:       strings.Repeat("ab", 20),
		FarmID:       "test-farm",
		Tenant:       "frontend",
		BuilderID:    Builder,
		InvocationID: "inv-1",
		StartedOn:    finished.Add(-time.Minute),
		FinishedOn:   finished,
		ThirdParty:   []provenance.ThirdParty{{Name: "com_github_pkg_errors", TreeDigest: digest.MustNew(strings.Repeat("11", 32), 100), Allowed: true}},
		Counts:       provenance.Counts{Source: 3, Generated: 2, ThirdParty: 1, ClientWritten: 1},
		ClientFiles:  []provenance.ClientInput{{Path: "bazel-out/k8-fastbuild/bin/services/frontend/server-0.params", Digest: digest.MustNew(strings.Repeat("22", 32), 10)}},
	}
}

// Sign builds and signs the statement for f and returns the envelope JSON.
func Sign(t testing.TB, k dsse.Signer, f provenance.Facts) []byte {
	t.Helper()
	st, err := provenance.Build(f)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	env, err := dsse.Sign(context.Background(), dsse.PayloadTypeInToto, payload, k)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Image makes a small random OCI image.
func Image(t testing.TB) v1.Image {
	t.Helper()
	l, err := random.Layer(512, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1), l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Layout writes img as an OCI image layout in a new directory under dir and
// returns the directory and the image's manifest digest and size.
func Layout(t testing.TB, dir string, img v1.Image) (string, v1.Hash, int64) {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("layout-%d", time.Now().UnixNano()))
	lp, err := layout.Write(p, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	sz, err := img.Size()
	if err != nil {
		t.Fatal(err)
	}
	return p, d, sz
}

// Registry starts go-containerregistry's in-process registry, with the
// referrers API when referrers is true, and returns its host:port.
func Registry(t testing.TB, referrers bool) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(nopLogger()), registry.WithReferrersSupport(referrers)))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// DockerRegistry starts Debian's docker-registry (distribution 2.8, no
// referrers API) on a loopback port with a temporary storage directory and
// returns its host:port. It skips the test if the binary is absent.
func DockerRegistry(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		if _, err2 := os.Stat("/usr/bin/docker-registry"); err2 != nil {
			t.Skip("docker-registry binary not installed (Debian package docker-registry)")
		}
		bin = "/usr/bin/docker-registry"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not answer on %s within 10s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
