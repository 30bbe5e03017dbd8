package trace_test

import (
	"context"
	"testing"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/execlog"
	"github.com/hallmark-build/hallmark/signer/trace"
)

// TestOutputDirectoryInput traces an action that reads a whole output
// directory (a tree artifact) of another action: the directory is matched
// by its root Directory digest, and its files count as generated.
func TestOutputDirectoryInput(t *testing.T) {
	f := newFarm(t)
	repoDir, commit := gitRepo(t, sources)
	gen := map[string]string{"a.txt": "A", "sub/b.txt": "B"}
	root := f.tree(gen) // the Directory of bazel-out/k8/bin/gen
	// The producing action, recorded by hand with an output directory.
	producer := f.run("Gen", map[string]string{"src/lib.go": sources["src/lib.go"]}, map[string]string{"bazel-out/k8/bin/gen.stamp": "S"}, "acme", "")
	rec := execlog.Record{Tenant: "acme", Action: producer.Action, Command: producer.Command, InputRoot: producer.InputRoot,
		OutputDirectories: []execlog.OutputDirectory{{Path: "bazel-out/k8/bin/gen", Tree: digest.OfBytes([]byte("tree")), Root: root}}}
	if _, err := f.log.Append(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	in := map[string]string{"src/main.go": sources["src/main.go"]}
	for p, c := range gen {
		in["bazel-out/k8/bin/gen/"+p] = c
	}
	f.run("Use", in, map[string]string{"bazel-out/k8/bin/use": "USE"}, "acme", "")
	w := &world{f: f, repo: repoDir, commit: commit}
	res, err := w.tracer(t).Trace(context.Background(), trace.Request{Tenant: "acme", Commit: commit,
		Artifacts: []trace.Artifact{{Name: "use", Digest: digest.OfBytes([]byte("USE"))}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Actions) != 2 || res.Actions[0].Digest != producer.Action {
		t.Fatalf("actions = %+v", res.Actions)
	}
	if want := (trace.Counts{Generated: 2, Source: 2}); res.Counts != want {
		t.Fatalf("counts = %+v, want %+v", res.Counts, want)
	}
}
