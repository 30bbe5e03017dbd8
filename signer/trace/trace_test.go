package trace_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/execlog"
	"github.com/hallmark-build/hallmark/signer/source"
	"github.com/hallmark-build/hallmark/signer/trace"
)

var sources = map[string]string{"src/lib.go": "package lib\n", "src/main.go": "package main\n"}

const sdk = "external/go_sdk/bin/go"

type world struct {
	f        *farm
	repo     string
	commit   string
	lib, app execlog.Record
}

// build records a two-action build: lib.a from src/lib.go, app from
// src/main.go and lib.a; both read the SDK and a client-written params file.
func build(t *testing.T, mainContent string) *world {
	w := &world{f: newFarm(t)}
	w.repo, w.commit = gitRepo(t, sources)
	w.lib = w.f.run("GoCompile", map[string]string{
		"src/lib.go": sources["src/lib.go"], sdk: "GO", "bazel-out/k8/bin/lib.params": "-o lib.a",
	}, map[string]string{"bazel-out/k8/bin/lib.a": "LIBA"}, "acme", "inv-1")
	w.app = w.f.run("GoLink", map[string]string{
		"src/main.go": mainContent, sdk: "GO", "bazel-out/k8/bin/lib.a": "LIBA",
	}, map[string]string{"bazel-out/k8/bin/app": "APP"}, "acme", "inv-1")
	return w
}

func (w *world) tracer(t *testing.T, opts ...trace.Option) *trace.Tracer {
	t.Helper()
	farm, err := trace.OpenFarm(w.f.dir)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := source.Open(context.Background(), w.repo, "main")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := trace.New(farm.Log, farm.CAS, trace.GitSources(repo), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func appArtifact() []trace.Artifact {
	return []trace.Artifact{{Name: "app", Digest: digest.OfBytes([]byte("APP"))}}
}

func TestTraceClassifies(t *testing.T) {
	w := build(t, sources["src/main.go"])
	tr := w.tracer(t)
	res, err := tr.Trace(context.Background(), trace.Request{Tenant: "acme", Artifacts: appArtifact(), Commit: w.commit})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Actions) != 2 || res.Actions[0].Digest != w.lib.Action || res.Actions[1].Digest != w.app.Action {
		t.Fatalf("actions = %+v", res.Actions)
	}
	if a := res.Actions[1]; a.Mnemonic != "GoLink" || a.Arguments[0] != "/bin/golink" || len(a.Environment) != 1 || a.ToolInvocationID != "inv-1" {
		t.Fatalf("link action = %+v", a)
	}
	want := trace.Counts{Generated: 1, Source: 2, ThirdParty: 1, ClientWritten: 1}
	if res.Counts != want {
		t.Fatalf("counts = %+v, want %+v", res.Counts, want)
	}
	if len(res.ClientWritten) != 1 || res.ClientWritten[0].Path != "bazel-out/k8/bin/lib.params" || string(res.ClientWritten[0].Content) != "-o lib.a" {
		t.Fatalf("client-written = %+v", res.ClientWritten)
	}
	if len(res.ThirdParty) != 1 || res.ThirdParty[0].Name != "go_sdk" || res.ThirdParty[0].Allowed || res.ThirdParty[0].Files != 1 {
		t.Fatalf("third-party = %+v", res.ThirdParty)
	}
	if res.Artifacts[0].Seq != w.app.Seq || res.Artifacts[0].Path != "bazel-out/k8/bin/app" {
		t.Fatalf("artifact = %+v", res.Artifacts[0])
	}
	if res.LogSeq != 2 || res.StartedOn.IsZero() || !res.FinishedOn.After(res.StartedOn) || strings.Join(res.InvocationIDs, ",") != "inv-1" {
		t.Fatalf("result = %+v", res)
	}

	if pa := res.ProvenanceActions(); len(pa) != 2 || pa[1].Mnemonic != "GoLink" || pa[1].Environment[0].Name != "PATH" || pa[1].Platform[0].Value != "linux" {
		t.Fatalf("provenance actions = %+v", pa)
	}
	if pc := res.ProvenanceCounts(); pc.Total() != 5 || len(res.ProvenanceClientFiles()) != 1 || len(res.ProvenanceThirdParty()) != 1 {
		t.Fatalf("provenance counts = %+v", pc)
	}

	// Pin the SDK tree: the same trace is now allowed, also with the allowlist required.
	al, err := trace.ParseAllowlist([]byte("# pinned\ngo_sdk " + res.ThirdParty[0].Tree.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err = w.tracer(t, trace.WithAllowlist(al), trace.RequireAllowlist()).Trace(context.Background(),
		trace.Request{Tenant: "acme", Artifacts: appArtifact(), Commit: w.commit, InvocationID: "inv-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.ThirdParty[0].Allowed {
		t.Fatal("pinned SDK not allowed")
	}
}

func TestTraceRefuses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, w *world) (*trace.Tracer, trace.Request)
		want  string
	}{
		{"UploadedOnly", func(t *testing.T, w *world) (*trace.Tracer, trace.Request) {
			d := w.f.put([]byte("built locally, uploaded with --remote_cache"))
			return w.tracer(t), trace.Request{Tenant: "acme", Commit: w.commit, Artifacts: []trace.Artifact{{Name: "local", Digest: d}}}
		}, `"local"`},
		{"OtherTenant", func(t *testing.T, w *world) (*trace.Tracer, trace.Request) {
			return w.tracer(t), trace.Request{Tenant: "other", Commit: w.commit, Artifacts: appArtifact()}
		}, "no action logged by the farm for this tenant"},
		{"OtherInvocation", func(t *testing.T, w *world) (*trace.Tracer, trace.Request) {
			return w.tracer(t), trace.Request{Tenant: "acme", Commit: w.commit, Artifacts: appArtifact(), InvocationID: "inv-2"}
		}, `in invocation "inv-2"`},
		{"CommitNotOnProtectedBranch", func(t *testing.T, w *world) (*trace.Tracer, trace.Request) {
			git(t, w.repo, "checkout", "-q", "-b", "feature")
			os.WriteFile(filepath.Join(w.repo, "x"), []byte("x"), 0o644)
			git(t, w.repo, "add", "x")
			git(t, w.repo, "commit", "-q", "-m", "feature")
			return w.tracer(t), trace.Request{Tenant: "acme", Commit: git(t, w.repo, "rev-parse", "HEAD"), Artifacts: appArtifact()}
		}, "not reachable from the protected branch"},
		{"TamperedCommand", func(t *testing.T, w *world) (*trace.Tracer, trace.Request) {
			p := filepath.Join(w.f.dir, "cas", w.app.Command.Hash[:2], w.app.Command.Hash)
			os.Chmod(p, 0o644)
			b, _ := os.ReadFile(p)
			b[len(b)-1] ^= 1
			os.WriteFile(p, b, 0o644)
			return w.tracer(t), trace.Request{Tenant: "acme", Commit: w.commit, Artifacts: appArtifact()}
		}, "corrupt or substituted"},
		{"MissingInputDirectory", func(t *testing.T, w *world) (*trace.Tracer, trace.Request) {
			os.Remove(filepath.Join(w.f.dir, "cas", w.lib.InputRoot.Hash[:2], w.lib.InputRoot.Hash))
			return w.tracer(t), trace.Request{Tenant: "acme", Commit: w.commit, Artifacts: appArtifact()}
		}, "input root Directory cannot be read"},
		{"BrokenChain", func(t *testing.T, w *world) (*trace.Tracer, trace.Request) {
			tr := w.tracer(t) // loads and verifies the log ...
			p := filepath.Join(w.f.dir, "log", execlog.FileName)
			b, _ := os.ReadFile(p)
			i := strings.Index(string(b), `"worker":"w0"`)
			b[i+11] = '1' // ... which is then edited in record 1
			os.WriteFile(p, b, 0o644)
			return tr, trace.Request{Tenant: "acme", Commit: w.commit, Artifacts: appArtifact()}
		}, "chain does not verify through record 2"},
		{"UnknownThirdPartyRequired", func(t *testing.T, w *world) (*trace.Tracer, trace.Request) {
			al, _ := trace.ParseAllowlist([]byte("other_repo " + digest.OfBytes(nil).String()))
			return w.tracer(t, trace.WithAllowlist(al), trace.RequireAllowlist()),
				trace.Request{Tenant: "acme", Commit: w.commit, Artifacts: appArtifact()}
		}, `"external/go_sdk"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := build(t, sources["src/main.go"])
			tr, req := tc.setup(t, w)
			res, err := tr.Trace(ctx, req)
			if err == nil || res != nil {
				t.Fatalf("Trace = %+v, %v; want a refusal", res, err)
			}
			if !errors.Is(err, trace.ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Trace error = %v; want %q", err, tc.want)
			}
		})
	}
	t.Run("ChangedUncommittedSource", func(t *testing.T) {
		w := build(t, "package main // edited, not committed\n")
		_, err := w.tracer(t).Trace(ctx, trace.Request{Tenant: "acme", Commit: w.commit, Artifacts: appArtifact()})
		if !errors.Is(err, trace.ErrRefused) || !errors.Is(err, source.ErrMismatch) || !strings.Contains(err.Error(), `"src/main.go"`) {
			t.Fatalf("Trace error = %v", err)
		}
	})
	t.Run("TamperedLogAtOpen", func(t *testing.T) {
		w := build(t, sources["src/main.go"])
		w.f.run("Extra", map[string]string{"src/lib.go": sources["src/lib.go"]}, map[string]string{"bazel-out/x": "X"}, "acme", "")
		p := filepath.Join(w.f.dir, "log", execlog.FileName)
		b, _ := os.ReadFile(p)
		i := strings.Index(string(b), `"worker":"w0"`)
		b[i+11] = '1'
		os.WriteFile(p, b, 0o644)
		if _, err := trace.OpenFarm(w.f.dir); !errors.Is(err, execlog.ErrCorrupt) {
			t.Fatalf("OpenFarm on a tampered log: %v", err)
		}
	})
}

func TestUntenantedRecords(t *testing.T) {
	w := &world{f: newFarm(t)}
	w.repo, w.commit = gitRepo(t, sources)
	w.f.run("GoLink", map[string]string{"src/main.go": sources["src/main.go"]}, map[string]string{"bazel-out/app": "APP"}, "", "")
	req := trace.Request{Tenant: "default", Commit: w.commit, Artifacts: appArtifact()}
	if _, err := w.tracer(t).Trace(context.Background(), req); !errors.Is(err, trace.ErrRefused) {
		t.Fatalf("untenanted record matched a tenant by default: %v", err)
	}
	if _, err := w.tracer(t, trace.WithUntenantedRecordsAs("default")).Trace(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseAllowlist(f *testing.F) {
	f.Add([]byte("go_sdk " + digest.OfBytes(nil).String() + "\n# c\n\n"))
	f.Add([]byte("a b c"))
	f.Add([]byte("../x e3b0/0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := trace.ParseAllowlist(b)
		if err != nil {
			return
		}
		for name, ds := range a {
			for d := range ds {
				if _, err := digest.New(d.Hash, d.Size); err != nil || name == "" || strings.ContainsAny(name, "/ ") {
					t.Fatalf("accepted %q %v", name, d)
				}
			}
		}
	})
}
