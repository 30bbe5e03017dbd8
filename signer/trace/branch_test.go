package trace_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hallmark-build/hallmark/signer/source"
	"github.com/hallmark-build/hallmark/signer/trace"
)

// hideBranch wraps Sources so that its trees do not report a protected
// branch (as a Sources that checks none would).
type hideBranch struct{ trace.Sources }

func (h hideBranch) At(ctx context.Context, commit string) (trace.SourceTree, error) {
	t, err := h.Sources.At(ctx, commit)
	if err != nil {
		return nil, err
	}
	return struct{ trace.SourceTree }{t}, nil
}

// TestTraceRecordsProtectedBranch: a trace over git sources records the
// protected branch the commit was verified on (its short name) and the
// repository, so the statement can carry them; sources that report none
// leave them empty.
func TestTraceRecordsProtectedBranch(t *testing.T) {
	w := build(t, sources["src/main.go"])
	repo, err := source.Open(context.Background(), w.repo, "main")
	if err != nil {
		t.Fatal(err)
	}
	farm, err := trace.OpenFarm(w.f.dir)
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(w.repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		src            trace.Sources
		want, wantRepo string
	}{
		{"GitSources", trace.GitSources(repo), "main", "file://" + abs},
		{"NamedGitSources", trace.NamedGitSources(repo, "https://git.example.com/mono"), "main", "https://git.example.com/mono"},
		{"SourcesWithoutBranch", hideBranch{trace.GitSources(repo)}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := trace.New(farm.Log, farm.CAS, tc.src)
			if err != nil {
				t.Fatal(err)
			}
			res, err := tr.Trace(context.Background(), trace.Request{Tenant: "acme", Artifacts: appArtifact(), Commit: w.commit})
			if err != nil {
				t.Fatal(err)
			}
			if res.ProtectedBranch != tc.want || res.Repository != tc.wantRepo {
				t.Fatalf("ProtectedBranch, Repository = %q, %q; want %q, %q", res.ProtectedBranch, res.Repository, tc.want, tc.wantRepo)
			}
		})
	}
}
