package e2e_test

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hallmark-build/hallmark/gate/policy"
	"github.com/hallmark-build/hallmark/internal/bazeltest"
	"github.com/hallmark-build/hallmark/signer/provenance"
	"github.com/hallmark-build/hallmark/signer/publish"
	"github.com/hallmark-build/hallmark/signer/publish/publishtest"
)

// localBuilder is the builder id hallmark-signer records by default
// (--farm-id=local).
const localBuilder = "https://hallmark.build/farm/local"

// gateWorld is the example built remotely and signed once, its image pushed
// to Debian's registry with the signed manifest attached, and the signer's
// key published through a TUF repository served over HTTP.
type gateWorld struct {
	hallmark string // the hallmark binary
	dir      string // scratch directory
	pub      string // the signer's public key
	envelope string // the signed manifest, a build output
	host     string // registry host:port
	ref      string // the pushed, signed image (by digest)
	tuf      tufServer
}

// tufServer is one TUF repository served over HTTP.
type tufServer struct {
	repo, url, root string
}

// flags are gate flags trusting this repository, with a cache of their own.
func (s tufServer) flags(cache string) []string {
	return []string{"--tuf-root=" + s.root, "--tuf-url=" + s.url, "--tuf-cache=" + cache}
}

// run runs the hallmark binary and returns its combined output.
func (w *gateWorld) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(w.hallmark, args...)
	cmd.Dir = w.dir
	cmd.Env = append(os.Environ(), "HOME="+w.dir) // no user Docker config
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (w *gateWorld) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := w.run(t, args...)
	if err != nil {
		t.Fatalf("hallmark %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// newTUF makes a TUF repository (extra init flags allowed) holding the
// public key file pub as "demo-signer" and serves it.
func (w *gateWorld) newTUF(t *testing.T, pub string, initFlags ...string) tufServer {
	t.Helper()
	repo, err := os.MkdirTemp(w.dir, "tuf-")
	if err != nil {
		t.Fatal(err)
	}
	w.must(t, append([]string{"tuf", "init", "--repo=" + repo, "--builders=" + localBuilder}, initFlags...)...)
	w.must(t, "tuf", "add-key", "--repo="+repo, "--name=demo-signer", "--key="+pub)
	r, err := publish.OpenTUF(repo)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(srv.Close)
	return tufServer{repo: repo, url: srv.URL, root: filepath.Join(r.Dir(), "1.root.json")}
}

// TestGateEndToEnd: Bazel builds the example on the farm, the signer signs,
// hallmark push publishes to Debian's registry, and the gate admits the image
// with TUF-delivered keys and a policy from `hallmark policy suggest`; then,
// each separately, the gate denies with a clear reason, and audit and
// break-glass modes admit and record.
func TestGateEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end Bazel test; skipped with -short")
	}
	env := bazeltest.Require(t)
	host := publishtest.DockerRegistry(t) // skips without docker-registry
	ws := env.Workspace(t, example)
	gitInit(t, ws.Dir)
	f := startSigningFarm(t, ws.Dir)
	remote_ := bazeltest.RemoteFlags(f.Addr)

	// One Bazel build for every subtest.
	r := ws.Build(append(remote_, "//:manifest", "//:image")...).Must(t)
	requireAllRemote(t, "build", r)
	if f.signed() != 1 {
		t.Fatalf("signer signed %d manifests, want 1:\n%s", f.signed(), f.signer.out.String())
	}
	dir := t.TempDir()
	w := &gateWorld{hallmark: filepath.Join(f.bin, "hallmark"), dir: dir, pub: filepath.Join(f.Keys, "signer.pub"),
		envelope: ws.BinPath("manifest.intoto.jsonl"), host: host}
	layoutDir := ws.BinPath("image.oci")

	out := w.must(t, "push", "--envelope="+w.envelope, "--oci-layout="+layoutDir, host+"/go_service:v1")
	for _, line := range strings.Split(out, "\n") {
		if ref, ok := strings.CutPrefix(line, "pushed "); ok {
			w.ref = strings.TrimSpace(ref)
		}
	}
	if !strings.Contains(w.ref, "@sha256:") {
		t.Fatalf("hallmark push did not print the pushed digest:\n%s", out)
	}
	w.tuf = w.newTUF(t, w.pub)

	// The unsigned image: the very image the farm built, in a repository
	// where nothing is attached to it.
	img := layoutImage(t, layoutDir)
	unsigned := host + "/unsigned:v1"
	writeImage(t, unsigned, img)

	// An image whose digest differs from the manifest's subjects, with the
	// genuine envelope attached to it (as an attacker can).
	other := publishtest.Image(t)
	mismatched := host + "/go_service:swapped"
	writeImage(t, mismatched, other)
	od, _ := other.Digest()
	osz, _ := other.Size()
	omt, _ := other.MediaType()
	envBytes, err := os.ReadFile(w.envelope)
	if err != nil {
		t.Fatal(err)
	}
	dref, err := name.NewDigest(host + "/go_service@" + od.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publish.Attach(context.Background(), dref, v1.Descriptor{MediaType: omt, Digest: od, Size: osz}, envBytes, provenance.PredicateType); err != nil {
		t.Fatalf("attaching the envelope to another image: %v", err)
	}

	// The policy: drafted by `hallmark policy suggest` from the pushed image,
	// then identities derived from it.
	suggested := w.must(t, append(append([]string{"policy", "suggest", "--identity=prod/go_service"},
		w.tuf.flags(filepath.Join(dir, "cache-suggest"))...), w.ref)...)
	if !strings.Contains(suggested, "requireProtectedBranch: true") {
		t.Errorf("the suggested policy does not require the protected branch (the signer did not record it):\n%s", suggested)
	}
	pol, err := policy.Parse([]byte(stripComments(suggested)))
	if err != nil {
		t.Fatalf("the suggested policy does not parse: %v\n%s", err, suggested)
	}
	base := pol.Identities["prod/go_service"]
	if base == nil || len(base.Sources) != 1 {
		t.Fatalf("the suggested policy has no single source for prod/go_service:\n%s", suggested)
	}
	outside := *base
	outside.Sources = []policy.Source{{Repository: base.Sources[0].Repository, PathPrefixes: []string{"services/other"}}}
	audited, glass := outside, outside
	audited.Mode, glass.Mode = policy.Audit, policy.BreakGlass
	pol.Identities["prod/outside"] = &outside
	pol.Identities["prod/audited"] = &audited
	pol.Identities["prod/emergency"] = &glass
	polBytes, err := pol.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	polPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polPath, polBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	suggestedPath := filepath.Join(dir, "suggested.yaml")
	if err := os.WriteFile(suggestedPath, []byte(suggested), 0o644); err != nil {
		t.Fatal(err)
	}
	auditLog := filepath.Join(dir, "audit.jsonl")

	check := func(t *testing.T, pol, identity string, trust []string, extra []string, ref string) (string, error) {
		t.Helper()
		args := append([]string{"gate", "check", "--policy=" + pol, "--identity=" + identity}, trust...)
		args = append(append(args, extra...), ref)
		return w.run(t, args...)
	}
	cache := func(t *testing.T) string { return filepath.Join(t.TempDir(), "tuf-cache") }

	t.Run("SuggestedPolicyAdmits", func(t *testing.T) {
		out, err := check(t, suggestedPath, "prod/go_service", w.tuf.flags(cache(t)), nil, w.ref)
		if err != nil || !strings.HasPrefix(out, "ALLOW") {
			t.Fatalf("gate check of the signed image: %v\n%s", err, out)
		}
	})
	t.Run("AdmitsByTag", func(t *testing.T) {
		out, err := check(t, polPath, "prod/go_service", w.tuf.flags(cache(t)), nil, host+"/go_service:v1")
		if err != nil || !strings.HasPrefix(out, "ALLOW") {
			t.Fatalf("gate check of the signed image by tag: %v\n%s", err, out)
		}
	})

	denials := []struct {
		name     string
		identity string
		trust    func(t *testing.T) []string
		ref      string
		want     string
	}{
		{"DenyUnsignedImage", "prod/go_service", func(t *testing.T) []string { return w.tuf.flags(cache(t)) }, unsigned, "unsigned image"},
		{"DenyDigestNotASubject", "prod/go_service", func(t *testing.T) []string { return w.tuf.flags(cache(t)) }, mismatched, "is not a subject of the manifest"},
		{"DenyKeyNotInTUF", "prod/go_service", func(t *testing.T) []string {
			// A TUF repository that publishes some other signer's key.
			return w.newTUF(t, publishtest.NewKey(t).WritePublic(t, t.TempDir())).flags(cache(t))
		}, w.ref, "not a trusted key"},
		{"DenySourcePathOutsidePolicy", "prod/outside", func(t *testing.T) []string { return w.tuf.flags(cache(t)) }, w.ref, "outside the accepted path prefixes"},
		{"DenyExpiredTUFTimestamp", "prod/go_service", func(t *testing.T) []string {
			s := w.newTUF(t, w.pub, "--timestamp-expiry=2s")
			time.Sleep(3 * time.Second) // nobody refreshes: a freeze
			return s.flags(cache(t))
		}, w.ref, "expired"},
		{"DenyRolledBackTUFSnapshot", "prod/go_service", func(t *testing.T) []string {
			s := w.newTUF(t, w.pub)
			c := cache(t)
			// The old timestamp and snapshot (a mirror replaying yesterday's
			// metadata: with only the snapshot swapped under a current
			// timestamp, the gate would keep using its cached snapshot).
			var olds [][]byte
			files := []string{"snapshot.json", "timestamp.json"}
			for _, name := range files {
				b, err := os.ReadFile(filepath.Join(s.repo, "repository", name))
				if err != nil {
					t.Fatal(err)
				}
				olds = append(olds, b)
			}
			w.must(t, "tuf", "refresh", "--repo="+s.repo)
			// The gate has seen the newer snapshot...
			if out, err := check(t, polPath, "prod/go_service", s.flags(c), nil, w.ref); err != nil {
				t.Fatalf("gate check before the rollback: %v\n%s", err, out)
			}
			// ...then the server hands out the old one.
			for i, name := range files {
				if err := os.WriteFile(filepath.Join(s.repo, "repository", name), olds[i], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			return s.flags(c)
		}, w.ref, "version"},
	}
	for _, tc := range denials {
		t.Run(tc.name, func(t *testing.T) {
			out, err := check(t, polPath, tc.identity, tc.trust(t), nil, tc.ref)
			if err == nil || !strings.HasPrefix(out, "DENY") || !strings.Contains(out, tc.want) {
				t.Fatalf("gate check: err=%v, want DENY naming %q:\n%s", err, tc.want, out)
			}
			t.Logf("%s", out)
		})
	}

	t.Run("AuditAdmitsAndRecords", func(t *testing.T) {
		out, err := check(t, polPath, "prod/audited", w.tuf.flags(cache(t)), []string{"--audit=" + auditLog}, unsigned)
		if err != nil || !strings.HasPrefix(out, "ALLOW") || !strings.Contains(out, "AUDIT_ONLY") {
			t.Fatalf("audit mode: err=%v, want ALLOW with AUDIT_ONLY:\n%s", err, out)
		}
		rec := lastAuditRecord(t, auditLog)
		if !strings.Contains(rec, `"prod/audited"`) || !strings.Contains(rec, "unsigned image") {
			t.Fatalf("the audit log does not record the audited violation:\n%s", rec)
		}
	})
	t.Run("BreakGlassWithoutJustificationDenies", func(t *testing.T) {
		out, err := check(t, polPath, "prod/emergency", w.tuf.flags(cache(t)), nil, unsigned)
		if err == nil || !strings.HasPrefix(out, "DENY") || !strings.Contains(out, "BREAK_GLASS_NO_JUSTIFICATION") {
			t.Fatalf("break-glass without justification: err=%v\n%s", err, out)
		}
	})
	t.Run("BreakGlassWithJustificationAdmitsAndRecords", func(t *testing.T) {
		out, err := check(t, polPath, "prod/emergency", w.tuf.flags(cache(t)),
			[]string{"--justification=INC-4711 outage fix", "--audit=" + auditLog}, unsigned)
		if err != nil || !strings.HasPrefix(out, "ALLOW") || !strings.Contains(out, "BREAK_GLASS_USED") {
			t.Fatalf("break-glass with justification: err=%v\n%s", err, out)
		}
		rec := lastAuditRecord(t, auditLog)
		if !strings.Contains(rec, `"kind":"break-glass"`) || !strings.Contains(rec, "INC-4711 outage fix") {
			t.Fatalf("the audit log does not record the break-glass use and its justification:\n%s", rec)
		}
	})

	t.Run("CosignVerifiesPushedAttestation", func(t *testing.T) {
		cosign := findCosign()
		if cosign == "" {
			t.Skip("cosign is not installed (go install github.com/sigstore/cosign/v2/cmd/cosign@v2.4.1)")
		}
		cmd := exec.Command(cosign, "verify-attestation", "--key", w.pub, "--type", "slsaprovenance1",
			"--insecure-ignore-tlog", "--allow-http-registry", w.ref)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "signatures were verified against the specified public key") {
			t.Fatalf("cosign verify-attestation %s: %v\n%s", w.ref, err, out)
		}
	})
}

// layoutImage returns the single image of an OCI image layout.
func layoutImage(t *testing.T, dir string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("%s: %d manifests in index.json, want 1", dir, len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func writeImage(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

// lastAuditRecord returns the last line of the audit log.
func lastAuditRecord(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the audit log: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// stripComments drops the comment lines `hallmark policy suggest` prints.
func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
