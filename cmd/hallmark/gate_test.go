package main_test

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
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hallmark-build/hallmark/signer/publish"
	"github.com/hallmark-build/hallmark/signer/publish/publishtest"
)

// gateCLIFixture pushes a signed image (with the hallmark binary) to a
// registry and publishes the signer key through a TUF repository served over
// HTTP.
type gateCLIFixture struct {
	dir, host, ref, unsigned, pub, tufRepo, tufURL, tufRoot string
	key                                                     *publishtest.Key
	digest                                                  string
}

func newGateCLIFixture(t *testing.T, host string) gateCLIFixture {
	t.Helper()
	dir := t.TempDir()
	f := gateCLIFixture{dir: dir, host: host, key: publishtest.NewKey(t)}
	f.pub = f.key.WritePublic(t, dir)
	layoutDir, dig, size := publishtest.Layout(t, dir, publishtest.Image(t))
	f.digest = dig.String()
	env := filepath.Join(dir, "image.intoto.jsonl")
	if err := os.WriteFile(env, publishtest.Sign(t, f.key, publishtest.Facts(dig.Hex, size, time.Now().Add(-time.Hour))), 0o644); err != nil {
		t.Fatal(err)
	}
	f.ref = host + "/team/frontend:v1"
	if out, err := hallmark(t, dir, "push", "--envelope="+env, "--oci-layout="+layoutDir, f.ref); err != nil {
		t.Fatalf("hallmark push: %v\n%s", err, out)
	}
	f.unsigned = host + "/team/unsigned:v1"
	r, _ := name.ParseReference(f.unsigned)
	if err := remote.Write(r, publishtest.Image(t)); err != nil {
		t.Fatal(err)
	}
	f.tufRepo = filepath.Join(dir, "tuf")
	for _, args := range [][]string{
		{"tuf", "init", "--repo=" + f.tufRepo, "--root-keys=3", "--root-threshold=2", "--builders=" + publishtest.Builder},
		{"tuf", "add-key", "--repo=" + f.tufRepo, "--name=prod-signer", "--key=" + f.pub},
	} {
		if out, err := hallmark(t, dir, args...); err != nil {
			t.Fatalf("hallmark %v: %v\n%s", args, err, out)
		}
	}
	srv := httptest.NewServer(mustOpenTUF(t, f.tufRepo).Handler())
	t.Cleanup(srv.Close)
	f.tufURL = srv.URL
	f.tufRoot = filepath.Join(f.tufRepo, "repository", "1.root.json")
	return f
}

func mustOpenTUF(t *testing.T, dir string) *publish.TUFRepo {
	r, err := publish.OpenTUF(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const cliPolicy = `apiVersion: hallmark.dev/gate/v1
global:
  defaults:
    builders: ["https://hallmark.build/farm/test"]
    requireThirdPartyAllowlisted: true
identities:
  prod/frontend:
    sources:
      - repository: https://git.example.com/mono
        pathPrefixes: ["services/frontend"]
  prod/admin:
    sources:
      - repository: https://git.example.com/mono
        pathPrefixes: ["services/admin"]
  prod/audited:
    mode: audit
  prod/emergency:
    mode: break-glass
`

func TestGateCheckCLI(t *testing.T) {
	for _, reg := range []struct {
		name  string
		start func(testing.TB) string
	}{
		{"InProcessRegistry", func(t testing.TB) string { return publishtest.Registry(t, true) }},
		{"DebianDockerRegistry", publishtest.DockerRegistry},
	} {
		t.Run(reg.name, func(t *testing.T) {
			f := newGateCLIFixture(t, reg.start(t))
			pol := filepath.Join(f.dir, "policy.yaml")
			os.WriteFile(pol, []byte(cliPolicy), 0o644)
			tufFlags := []string{"--tuf-root=" + f.tufRoot, "--tuf-url=" + f.tufURL, "--tuf-cache=" + filepath.Join(f.dir, "tufcache")}
			keyFlags := []string{"--key=" + f.pub}
			audit := filepath.Join(f.dir, "audit.jsonl")
			for _, tc := range []struct {
				name  string
				args  []string
				allow bool
				want  string
			}{
				{"AllowWithKey", append([]string{"--identity=prod/frontend", f.ref}, keyFlags...), true, "ALLOW"},
				{"AllowWithTUF", append([]string{"--identity=prod/frontend", f.ref}, tufFlags...), true, "ALLOW"},
				{"DenyUnsigned", append([]string{"--identity=prod/frontend", f.unsigned}, tufFlags...), false, "unsigned image"},
				{"DenyKeyNotInTUF", append([]string{"--identity=prod/frontend", f.ref}, "--key="+publishtest.NewKey(t).WritePublic(t, t.TempDir())), false, "not a trusted key"},
				{"DenySourcePathOutsidePolicy", append([]string{"--identity=prod/admin", f.ref}, tufFlags...), false, "outside the accepted path prefixes"},
				{"AuditAdmitsAndRecords", append([]string{"--identity=prod/audited", "--audit=" + audit, f.unsigned}, tufFlags...), true, "AUDIT_ONLY"},
				{"BreakGlassWithoutJustification", append([]string{"--identity=prod/emergency", f.unsigned}, tufFlags...), false, "BREAK_GLASS_NO_JUSTIFICATION"},
				{"BreakGlassWithJustification", append([]string{"--identity=prod/emergency", "--justification=INC-7", "--audit=" + audit, f.unsigned}, tufFlags...), true, "BREAK_GLASS_USED"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					args := append([]string{"gate", "check", "--policy=" + pol}, tc.args...)
					// Flags must precede the reference.
					args = moveRefLast(args)
					out, err := hallmark(t, f.dir, args...)
					if (err == nil) != tc.allow || !strings.Contains(out, tc.want) {
						t.Fatalf("hallmark %v: err=%v, want allow=%v and %q in:\n%s", args, err, tc.allow, tc.want, out)
					}
				})
			}
			t.Run("AuditLogHasBreakGlass", func(t *testing.T) {
				b, _ := os.ReadFile(audit)
				if !strings.Contains(string(b), `"kind":"break-glass"`) || !strings.Contains(string(b), "INC-7") {
					t.Fatalf("audit log lacks the break-glass record:\n%s", b)
				}
			})
			t.Run("RevokedKeyDenied", func(t *testing.T) {
				if out, err := hallmark(t, f.dir, "tuf", "revoke-key", "--repo="+f.tufRepo, "--name=prod-signer"); err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				out, err := hallmark(t, f.dir, append(append([]string{"gate", "check", "--policy=" + pol, "--identity=prod/frontend"}, tufFlags...), f.ref)...)
				if err == nil || !strings.Contains(out, "not a trusted key") {
					t.Fatalf("after revocation: err=%v\n%s", err, out)
				}
			})
		})
	}
}

func TestPolicySuggestCLI(t *testing.T) {
	f := newGateCLIFixture(t, publishtest.Registry(t, true))
	out, err := hallmark(t, f.dir, "policy", "suggest", "--identity=prod/new", "--key="+f.pub, f.ref)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "mode: enforce") || !strings.Contains(out, "services/frontend") {
		t.Fatalf("suggested policy:\n%s", out)
	}
	pol := filepath.Join(f.dir, "suggested.yaml")
	os.WriteFile(pol, []byte(out), 0o644)
	if out, err := hallmark(t, f.dir, "gate", "check", "--policy="+pol, "--identity=prod/new", "--key="+f.pub, f.ref); err != nil {
		t.Fatalf("gate check with the suggested policy: %v\n%s", err, out)
	}
	if out, err := hallmark(t, f.dir, "gate", "check", "--policy="+pol, "--identity=prod/new", "--key="+f.pub, f.unsigned); err == nil {
		t.Fatalf("suggested policy admits an unsigned image:\n%s", out)
	}
}

// TestCosignVerifiesPushedAttestation checks the cosign .att format with
// cosign v2 itself.
func TestCosignVerifiesPushedAttestation(t *testing.T) {
	cosign := cosignBin(t)
	f := newGateCLIFixture(t, publishtest.DockerRegistry(t))
	cmd := exec.CommandContext(context.Background(), cosign, "verify-attestation", "--key", f.pub, "--type", "slsaprovenance1",
		"--insecure-ignore-tlog", "--allow-http-registry", f.host+"/team/frontend@"+f.digest)
	cmd.Env = append(os.Environ(), "HOME="+f.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cosign verify-attestation: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "payloadType") || !strings.Contains(string(out), "signatures were verified against the specified public key") {
		t.Fatalf("cosign did not print a verified attestation:\n%s", out)
	}
}

func moveRefLast(args []string) []string {
	var flags, pos []string
	for _, a := range args[2:] {
		if strings.HasPrefix(a, "--") {
			flags = append(flags, a)
		} else {
			pos = append(pos, a)
		}
	}
	return append(append(append([]string{}, args[:2]...), flags...), pos...)
}
