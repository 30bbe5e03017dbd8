// Package tests runs the Starlark analysis tests of hallmark's rules
// (analysis_tests.bzl) in a small workspace with Bazel.
package tests_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmark-build/hallmark/internal/bazeltest"
)

const workspace = `workspace(name = "analysis")

load("@bazel_tools//tools/build_defs/repo:http.bzl", "http_archive")

http_archive(name = "io_bazel_rules_go", urls = ["https://github.com/bazelbuild/rules_go/releases/download/v0.34.0/rules_go-v0.34.0.zip"])

http_archive(name = "bazel_skylib", urls = ["https://github.com/bazelbuild/bazel-skylib/releases/download/1.3.0/bazel-skylib-1.3.0.tar.gz"])

load("@bazel_skylib//:workspace.bzl", "bazel_skylib_workspace")

bazel_skylib_workspace()

load("@io_bazel_rules_go//go:deps.bzl", "go_register_toolchains", "go_rules_dependencies")

go_rules_dependencies()

go_register_toolchains(version = "1.19.8")

http_archive(name = "hallmark", urls = ["https://github.com/hallmark-build/hallmark/archive/refs/tags/v0.1.0.tar.gz"])

load("@hallmark//rules:repositories.bzl", "hallmark_dependencies", "hallmark_register_toolchains")

hallmark_dependencies()

hallmark_register_toolchains()
`

const build = `load("@hallmark//rules/tests:analysis_tests.bzl", "hallmark_analysis_test_suite")

hallmark_analysis_test_suite(name = "analysis")
`

func TestAnalysis(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Bazel; skipped with -short")
	}
	env := bazeltest.Require(t)
	src := t.TempDir()
	for name, content := range map[string]string{"WORKSPACE": workspace, "BUILD.bazel": build, "src.txt": "a source\n", "p.json": "{}\n"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ws := env.Workspace(t, src)
	r := ws.Test("//:analysis")
	if r.Err != nil {
		t.Fatalf("analysis tests failed: %v\n%s", r.Err, r.Output)
	}
	if !strings.Contains(r.Output, "3 tests pass") {
		t.Errorf("want 3 passing analysis tests:\n%s", r.Output)
	}
}
