package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmark-build/hallmark/internal/bazeltest"
)

// A second workspace, written from docs/rules.md alone: its WORKSPACE and
// .bazelrc are copied from the docs' code blocks, its BUILD uses a genrule
// (not rules_go's binaries) as the signed artifact.
func TestRulesFromDocs(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end Bazel test; skipped with -short")
	}
	env := bazeltest.Require(t)
	docs, err := os.ReadFile(filepath.Join(env.RepoRoot, "docs", "rules.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := codeBlocks(string(docs))
	var wsFile, rc string
	for _, b := range blocks {
		switch {
		case strings.HasPrefix(b, "workspace(name"):
			wsFile = b
		case strings.HasPrefix(b, "build --workspace_status_command"):
			rc = b
		}
	}
	if wsFile == "" || rc == "" {
		t.Fatalf("docs/rules.md lacks the WORKSPACE or the .bazelrc block")
	}
	src := t.TempDir()
	files := map[string]string{
		"WORKSPACE": wsFile,
		".bazelrc":  rc,
		"BUILD.bazel": `load("@hallmark//rules:defs.bzl", "hallmark_manifest")

genrule(name = "report", outs = ["report.txt"], srcs = ["data.txt"], cmd = "tr a-z A-Z < $< > $@")

hallmark_manifest(name = "manifest", srcs = [":report"], tags = ["manual"])
`,
		"data.txt": "signed from the docs\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ws := env.Workspace(t, src)
	gitInit(t, ws.Dir)
	f := startSigningFarm(t, ws.Dir)
	r := ws.Build(append(bazeltest.RemoteFlags(f.Addr), "//:manifest")...).Must(t)
	requireAllRemote(t, "docs workspace build", r)
	if _, err := os.Stat(ws.BinPath("manifest.intoto.jsonl")); err != nil {
		t.Fatalf("no envelope: %v", err)
	}
	if f.signed() != 1 {
		t.Errorf("signer signed %d manifests, want 1", f.signed())
	}
}

// codeBlocks returns the contents of the fenced code blocks of a markdown text.
func codeBlocks(md string) []string {
	var out []string
	var cur []string
	in := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "```") {
			if in {
				out = append(out, strings.Join(cur, "\n")+"\n")
				cur = nil
			}
			in = !in
			continue
		}
		if in {
			cur = append(cur, line)
		}
	}
	return out
}
