package policy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/gate/policy"
)

const goodPolicy = `apiVersion: hallmark.dev/gate/v1
global:
  defaults:
    builders: ["https://hallmark.dev/farm/prod"]
    requireProtectedBranch: true
    requireThirdPartyAllowlisted: true
    toleratedClientWritten: ["bazel-out/**/*.params", "bazel-out/**/MANIFEST"]
    maxAge: 720h
  allowedPackages:
    - name: com_github_pkg_errors
      digest: sha256:1111111111111111111111111111111111111111111111111111111111111111
identities:
  prod/frontend:
    sources:
      - repository: https://git.example.com/mono
        pathPrefixes: ["services/frontend"]
  prod/audited:
    mode: audit
    sources:
      - repository: https://git.example.com/mono
  prod/emergency:
    mode: break-glass
    builders: ["https://hallmark.dev/farm/prod"]
  prod/empty: {}
`

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		wantErr string // empty: success
	}{
		{"Good", goodPolicy, ""},
		{"UnknownTopLevel", strings.Replace(goodPolicy, "global:", "globals:", 1), "field globals not found"},
		{"UnknownRequirement", strings.Replace(goodPolicy, "maxAge: 720h", "maxAge: 720h\n    requireSigned: true", 1), "requireSigned"},
		{"MisspeltInIdentity", strings.Replace(goodPolicy, "    mode: audit", "    mdoe: audit", 1), "mdoe"},
		{"BadMode", strings.Replace(goodPolicy, "mode: audit", "mode: lenient", 1), `"lenient" is not enforce`},
		{"BadDuration", strings.Replace(goodPolicy, "720h", "a month", 1), "invalid duration"},
		{"NegativeDuration", strings.Replace(goodPolicy, "720h", "-1h", 1), "must be positive"},
		{"BadDigest", strings.Replace(goodPolicy, "sha256:1111", "md5:1111", 1), "not sha256"},
		{"NoVersion", strings.Replace(goodPolicy, "apiVersion: hallmark.dev/gate/v1\n", "", 1), "apiVersion"},
		{"NoIdentities", "apiVersion: hallmark.dev/gate/v1\nidentities: {}\n", "no identity"},
		{"Empty", "", "empty file"},
		{"TwoDocuments", goodPolicy + "---\n" + goodPolicy, "more than one"},
		{"DuplicateKey", goodPolicy + "  prod/empty: {}\n", "already defined"},
		{"AbsolutePrefix", strings.Replace(goodPolicy, `["services/frontend"]`, `["/etc"]`, 1), "relative path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.Parse([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if len(p.Identities) != 4 {
					t.Fatalf("got %d identities, want 4", len(p.Identities))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, policy.ErrInvalid) {
				t.Fatalf("Parse error = %v, want ErrInvalid mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	p, err := policy.Parse([]byte(goodPolicy))
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	q, err := policy.Parse(b)
	if err != nil {
		t.Fatalf("re-Parse of marshalled policy: %v\n%s", err, b)
	}
	r1, m1, _ := p.Effective("prod/frontend")
	r2, m2, _ := q.Effective("prod/frontend")
	if m1 != m2 || time.Duration(*r1.MaxAge) != time.Duration(*r2.MaxAge) || len(r2.Sources) != 1 {
		t.Fatalf("round trip changed the policy:\n%s", b)
	}
}

func goodFacts(identity string, now time.Time) policy.Facts {
	return policy.Facts{
		Identity:         identity,
		Image:            "reg/app@sha256:aa",
		BuilderID:        "https://hallmark.dev/farm/prod",
		SourceRepository: "https://git.example.com/mono",
		SourceCommit:     "0123456789abcdef0123456789abcdef01234567",
		ProtectedBranch:  "main",
		Targets:          []string{"//services/frontend:image", "//services/frontend/cmd/server"},
		ThirdParty:       []policy.Dep{{Name: "com_github_pkg_errors", Digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"}},
		ClientWritten:    []policy.Input{{Path: "bazel-out/k8-fastbuild/bin/services/frontend/server-0.params"}},
		FinishedOn:       now.Add(-time.Hour),
	}
}

func TestEvaluate(t *testing.T) {
	p, err := policy.Parse([]byte(goodPolicy))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		edit      func(*policy.Facts)
		allow     bool
		wantCodes []policy.Code
		review    bool
	}{
		{"Satisfied", func(f *policy.Facts) {}, true, nil, false},
		{"NoPolicy", func(f *policy.Facts) { f.Identity = "prod/unknown" }, false, []policy.Code{policy.CodeNoPolicy}, false},
		{"Unsigned", func(f *policy.Facts) {
			*f = policy.Facts{Identity: f.Identity, VerifyErrors: []string{"no manifest attached"}}
		}, false, []policy.Code{policy.CodeVerification}, false},
		{"WrongBuilder", func(f *policy.Facts) { f.BuilderID = "https://evil" }, false, []policy.Code{policy.CodeBuilder}, false},
		{"WrongRepo", func(f *policy.Facts) { f.SourceRepository = "https://git.example.com/fork" }, false, []policy.Code{policy.CodeSource}, false},
		{"PathOutside", func(f *policy.Facts) { f.Targets = append(f.Targets, "//services/frontend-admin:bin") }, false, []policy.Code{policy.CodePath}, false},
		{"NotSubmitted", func(f *policy.Facts) { f.ProtectedBranch = "" }, false, []policy.Code{policy.CodeProtectedBranch}, false},
		{"UnlistedThirdParty", func(f *policy.Facts) {
			f.ThirdParty = append(f.ThirdParty, policy.Dep{Name: "evil", Digest: "sha256:22"})
		}, false, []policy.Code{policy.CodeThirdParty}, false},
		{"SignerAllowlisted", func(f *policy.Facts) {
			f.ThirdParty = append(f.ThirdParty, policy.Dep{Name: "ok", Digest: "sha256:22", Allowlisted: true})
		}, true, nil, false},
		{"ClientWrittenNotTolerated", func(f *policy.Facts) {
			f.ClientWritten = append(f.ClientWritten, policy.Input{Path: "bazel-out/k8/bin/gen.go"})
		}, false, []policy.Code{policy.CodeClientWritten}, false},
		{"TooOld", func(f *policy.Facts) { f.FinishedOn = now.Add(-800 * time.Hour) }, false, []policy.Code{policy.CodeMaxAge}, false},
		{"EveryReasonKept", func(f *policy.Facts) {
			f.BuilderID = "x"
			f.ProtectedBranch = ""
			f.FinishedOn = time.Time{}
		}, false, []policy.Code{policy.CodeBuilder, policy.CodeProtectedBranch, policy.CodeMaxAge}, false},
		{"AuditAdmits", func(f *policy.Facts) { f.Identity = "prod/audited"; f.BuilderID = "x" }, true, []policy.Code{policy.CodeBuilder}, false},
		{"BreakGlassNoJustification", func(f *policy.Facts) { f.Identity = "prod/emergency"; f.BuilderID = "x" }, false, []policy.Code{policy.CodeBuilder, policy.CodeNoJustification}, false},
		{"BreakGlassJustified", func(f *policy.Facts) {
			f.Identity = "prod/emergency"
			f.BuilderID = "x"
			f.Justification = "INC-1234 outage"
		}, true, []policy.Code{policy.CodeBuilder}, true},
		{"EmptyPolicyUsesDefaults", func(f *policy.Facts) { f.Identity = "prod/empty"; f.SourceRepository = "anything" }, true, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := goodFacts("prod/frontend", now)
			tc.edit(&f)
			d := policy.Evaluate(p, f, now)
			if d.Allow != tc.allow || d.Review != tc.review {
				t.Fatalf("Allow=%v Review=%v, want %v %v; reasons %v", d.Allow, d.Review, tc.allow, tc.review, d.Reasons())
			}
			var got []policy.Code
			for _, r := range d.Violations {
				got = append(got, r.Code)
			}
			if strings.Join(codes(got), ",") != strings.Join(codes(tc.wantCodes), ",") {
				t.Fatalf("violations %v, want codes %v", d.Violations, tc.wantCodes)
			}
		})
	}
}

func codes(cs []policy.Code) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodPolicy))
	f.Add([]byte("apiVersion: hallmark.dev/gate/v1\nidentities:\n  a:\n"))
	f.Add([]byte("identities: {a: {maxAge: 1h, mode: audit}}"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := policy.Parse(b)
		if err != nil {
			return
		}
		// A parsed policy evaluates without panicking and round-trips.
		for id := range p.Identities {
			policy.Evaluate(p, policy.Facts{Identity: id}, time.Unix(0, 0))
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if _, err := policy.Parse(out); err != nil {
			t.Fatalf("re-Parse: %v\n%s", err, out)
		}
	})
}
