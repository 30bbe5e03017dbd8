package provenance_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/signer/provenance"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const commit = "0123456789abcdef0123456789abcdef01234567"

func sampleFacts() provenance.Facts {
	bin := digest.OfBytes([]byte("binary"))
	return provenance.Facts{
		Artifacts:    []provenance.Artifact{{Name: "bazel-bin/cmd/hello/hello_/hello", Digest: bin}},
		Targets:      []string{"//cmd/hello"},
		Repository:   "https://git.example.com/hello.git",
		Commit:       commit,
		FarmID:       "farm-1",
		Tenant:       "team-a",
		BuilderID:    "https://hallmark.build/farm/farm-1",
		InvocationID: "4b1f0c1e-6f7a-4a7e-9d0e-2b8f5a6c7d8e",
		StartedOn:    time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		FinishedOn:   time.Date(2025, 1, 2, 3, 5, 0, 0, time.UTC),
		ThirdParty: []provenance.ThirdParty{
			{Name: "io_bazel_rules_go", TreeDigest: digest.OfBytes([]byte("rules_go tree")), Allowed: true},
			{Name: "go_sdk", TreeDigest: digest.OfBytes([]byte("sdk tree")), Allowed: false},
		},
		Actions: []provenance.Action{{
			Digest:      digest.OfBytes([]byte("action")),
			Mnemonic:    "GoLink",
			Arguments:   []string{"bazel-out/host/bin/builder", "link", "-o", "bazel-out/k8-fastbuild/bin/cmd/hello/hello_/hello"},
			Environment: []provenance.EnvVar{{Name: "GOOS", Value: "linux"}, {Name: "PATH", Value: "/bin:/usr/bin"}},
			Outputs:     []string{"bazel-out/k8-fastbuild/bin/cmd/hello/hello_/hello"},
			Platform:    []provenance.Property{{Name: "OSFamily", Value: "Linux"}},
		}},
		Counts: provenance.Counts{Generated: 3, Source: 2, ThirdParty: 40, ClientWritten: 1},
		ClientFiles: []provenance.ClientInput{{
			Path: "bazel-out/k8-fastbuild/bin/cmd/hello/hello.a-0.params", Digest: digest.OfBytes([]byte("-o\nx\n")), Content: []byte("-o\nx\n"),
		}},
	}
}

func TestBuildGolden(t *testing.T) {
	st, err := provenance.Build(sampleFacts())
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "statement.golden.json")
	if *update {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
		t.Errorf("statement differs from %s; got:\n%s", golden, got)
	}
	// The golden file parses and validates, and decodes to the same facts.
	parsed, err := provenance.Parse(want)
	if err != nil {
		t.Fatalf("Parse(golden): %v", err)
	}
	sum, err := parsed.Summary()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Counts.Total() != 46 || len(sum.ClientWritten) != 1 || string(sum.ClientWritten[0].Content) != "-o\nx\n" {
		t.Errorf("summary = %+v", sum)
	}
	if len(sum.UnreviewedThirdParty) != 1 || sum.UnreviewedThirdParty[0] != "go_sdk" {
		t.Errorf("unreviewed third party = %v, want [go_sdk]", sum.UnreviewedThirdParty)
	}
	acts, err := parsed.Actions()
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].Mnemonic != "GoLink" || len(acts[0].Environment) != 2 {
		t.Errorf("actions = %+v", acts)
	}
	if name, ok := parsed.SubjectBySHA256(digest.OfBytes([]byte("binary")).Hash); !ok || name != "bazel-bin/cmd/hello/hello_/hello" {
		t.Errorf("SubjectBySHA256 = %q, %v", name, ok)
	}
}

func TestBuildRefusesIncompleteFacts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(*provenance.Facts)
		wantErr string
	}{
		{"NoArtifacts", func(f *provenance.Facts) { f.Artifacts = nil }, "no artifacts"},
		{"ShortCommit", func(f *provenance.Facts) { f.Commit = "abc123" }, "not a full"},
		{"UpperCommit", func(f *provenance.Facts) { f.Commit = strings.ToUpper(commit) }, "not lower-case hex"},
		{"NoBuilder", func(f *provenance.Facts) { f.BuilderID = "" }, "missing builder id"},
		{"NoTenant", func(f *provenance.Facts) { f.Tenant = "" }, "missing tenant"},
		{"UnnamedArtifact", func(f *provenance.Facts) { f.Artifacts[0].Name = "" }, "has no name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := sampleFacts()
			tc.edit(&f)
			_, err := provenance.Build(f)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Build error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	st, err := provenance.Build(sampleFacts())
	if err != nil {
		t.Fatal(err)
	}
	good, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provenance.Parse(good); err != nil {
		t.Fatalf("Parse(good): %v", err)
	}
	for _, tc := range []struct {
		name, old, new, wantErr string
	}{
		{"StatementType", provenance.StatementType, "https://in-toto.io/Statement/v0.1", "_type"},
		{"PredicateType", provenance.PredicateType, "https://slsa.dev/provenance/v0.2", "predicateType"},
		{"BuildType", provenance.BuildType, "https://example.com/other", "buildType"},
		{"CommitMismatch", `"gitCommit":"` + commit, `"gitCommit":"` + strings.Repeat("f", 40), "differs from the claimed commit"},
		{"UnknownField", `"_type"`, `"extra":1,"_type"`, "unknown field"},
		{"BadSubjectDigest", `"digest":{"sha256":"`, `"digest":{"sha256":"zz`, "subject"},
		{"CountsMismatch", `"clientWritten":1`, `"clientWritten":2`, "client-written inputs counted"},
		{"NoBuilder", `"builder":{"id":"https://hallmark.build/farm/farm-1"}`, `"builder":{"id":""}`, "builder.id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(good, []byte(tc.old)) {
				t.Fatalf("test setup: %q not in statement", tc.old)
			}
			bad := bytes.Replace(good, []byte(tc.old), []byte(tc.new), 1)
			_, err := provenance.Parse(bad)
			if !errors.Is(err, provenance.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Parse error = %v, want ErrInvalid containing %q", err, tc.wantErr)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	st, err := provenance.Build(sampleFacts())
	if err != nil {
		f.Fatal(err)
	}
	good, _ := st.Marshal()
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"00"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := provenance.Parse(data)
		if err != nil {
			return
		}
		// A statement that parses must survive a round trip.
		out, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := provenance.Parse(out); err != nil {
			t.Fatalf("re-parse failed: %v", err)
		}
	})
}
