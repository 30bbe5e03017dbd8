// Command genws writes the benchmark workspaces, deterministically: the same
// flags always give byte-identical files.
//
//	genws -kind=go -out=DIR [-layers=6 -width=10]
//	    a rules_go workspace: layers×width go_library packages, each depending
//	    on two packages of the layer below, every -test-every'th with a
//	    go_test, plus three go_binary targets (about 300 actions in all)
//	genws -kind=genrule -out=DIR [-genrules=500]
//	    a workspace of independent tiny genrules
//
// The rules_go workspace uses an ordinary http_archive for rules_go; build it
// offline with the bazelrc of scripts/bazel-env.sh.
package main

import (
	"flag"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	kind := flag.String("kind", "go", `what to generate: "go" or "genrule"`)
	out := flag.String("out", "", "output directory (replaced)")
	layers := flag.Int("layers", 6, "go: number of package layers")
	width := flag.Int("width", 10, "go: packages per layer")
	testEvery := flag.Int("test-every", 3, "go: give every Nth package a go_test")
	genrules := flag.Int("genrules", 500, "genrule: number of genrules")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "genws: -out is required")
		os.Exit(2)
	}
	var files map[string]string
	var err error
	switch *kind {
	case "go":
		files, err = GoWorkspace(*layers, *width, *testEvery)
	case "genrule":
		files, err = GenruleWorkspace(*genrules)
	default:
		err = fmt.Errorf("unknown -kind %q (want go or genrule)", *kind)
	}
	if err == nil {
		err = write(*out, files)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "genws:", err)
		os.Exit(1)
	}
	fmt.Printf("genws: wrote %d files to %s\n", len(files), *out)
}

func write(dir string, files map[string]string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

const rulesGoWorkspace = `workspace(name = "%s")

load("@bazel_tools//tools/build_defs/repo:http.bzl", "http_archive")

http_archive(
    name = "io_bazel_rules_go",
    sha256 = "16e9fca53ed6bd4ff4ad76facc9b7b651a89db1689a2877d6fd7b82aa824e366",
    urls = ["https://github.com/bazelbuild/rules_go/releases/download/v0.34.0/rules_go-v0.34.0.zip"],
)

load("@io_bazel_rules_go//go:deps.bzl", "go_register_toolchains", "go_rules_dependencies")

go_rules_dependencies()

go_register_toolchains(version = "1.19.8")
`

// GoWorkspace returns the files of the rules_go benchmark workspace.
// Every testEvery-th package (counting from the first) has a go_test.
func GoWorkspace(layers, width, testEvery int) (map[string]string, error) {
	if layers < 1 || width < 1 || layers*width > 10000 || testEvery < 1 {
		return nil, fmt.Errorf("layers=%d width=%d test-every=%d: want at least 1 each and at most 10000 packages", layers, width, testEvery)
	}
	const module = "bench.example/gows"
	files := map[string]string{
		"WORKSPACE":   fmt.Sprintf(rulesGoWorkspace, "gows"),
		"BUILD.bazel": "",
		// A go.mod keeps the generated code out of any enclosing Go module's ./...
		"go.mod": "module " + module + "\n\ngo 1.19\n",
	}
	name := func(l, i int) string { return fmt.Sprintf("l%d/p%02d", l, i) }
	for l := 0; l < layers; l++ {
		for i := 0; i < width; i++ {
			pkg := name(l, i)
			base := fmt.Sprintf("p%02d", i)
			var deps, imports, calls []string
			if l > 0 {
				for _, j := range []int{i, (i + 1) % width} {
					dep := name(l-1, j)
					deps = append(deps, fmt.Sprintf(`        "//%s",`, dep))
					alias := fmt.Sprintf("d%d", j)
					imports = append(imports, fmt.Sprintf("\t%s %q", alias, module+"/"+dep))
					calls = append(calls, fmt.Sprintf("%s.Value(n)", alias))
				}
			}
			if len(calls) == 0 {
				calls = []string{"n"}
			}
			var src strings.Builder
			fmt.Fprintf(&src, "// Package %s is layer %d, package %d of the generated benchmark.\npackage %s\n\n", base, l, i, base)
			if len(imports) > 0 {
				fmt.Fprintf(&src, "import (\n%s\n)\n\n", strings.Join(imports, "\n"))
			}
			fmt.Fprintf(&src, "// Value mixes n with this package's position and its dependencies.\nfunc Value(n int) int {\n\treturn mix(%s) + %d\n}\n", strings.Join(calls, " + "), l*width+i)
			// Some code per package so that compiling it is not free.
			for k := 0; k < 8; k++ {
				vals := make([]string, 16)
				for m := range vals {
					vals[m] = fmt.Sprint((l*131 + i*17 + k*7 + m*3) % 97)
				}
				fmt.Fprintf(&src, "\n// Table%d is a lookup table.\nvar Table%d = [...]int{%s}\n", k, k, strings.Join(vals, ", "))
			}
			src.WriteString("\nfunc mix(n int) int {\n\tfor _, t := range Table0 {\n\t\tn = n*31 + t\n\t}\n\treturn n & 0xffff\n}\n")
			files[pkg+"/"+base+".go"] = src.String()
			withTest := (l*width+i)%testEvery == 0
			if withTest {
				files[pkg+"/"+base+"_test.go"] = fmt.Sprintf(`package %s

import "testing"

func TestValueDeterministic(t *testing.T) {
	if Value(3) != Value(3) {
		t.Fatal("Value is not deterministic")
	}
}
`, base)
			}
			build := fmt.Sprintf(`load("@io_bazel_rules_go//go:def.bzl", "go_library", "go_test")

go_library(
    name = "%[1]s",
    srcs = ["%[1]s.go"],
    importpath = %[2]q,
    visibility = ["//visibility:public"],%[3]s
)
`, base, module+"/"+pkg, depsAttr(deps))
			if withTest {
				build += fmt.Sprintf(`
go_test(
    name = "%[1]s_test",
    srcs = ["%[1]s_test.go"],
    embed = [":%[1]s"],
)
`, base)
			}
			files[pkg+"/BUILD.bazel"] = build
			if l == layers-1 && i < 3 {
				files[fmt.Sprintf("cmd/bin%d/main.go", i)] = fmt.Sprintf("// Command bin%d prints a value of the top layer.\npackage main\n\nimport (\n\t\"fmt\"\n\n\tp %q\n)\n\nfunc main() { fmt.Println(p.Value(1)) }\n", i, module+"/"+pkg)
				files[fmt.Sprintf("cmd/bin%d/BUILD.bazel", i)] = fmt.Sprintf("load(\"@io_bazel_rules_go//go:def.bzl\", \"go_binary\")\n\ngo_binary(\n    name = \"bin%d\",\n    srcs = [\"main.go\"],\n    deps = [\"//%s\"],\n)\n", i, pkg)
			}
		}
	}
	for name, content := range files {
		if strings.HasSuffix(name, ".go") {
			b, err := format.Source([]byte(content))
			if err != nil {
				return nil, fmt.Errorf("generated %s does not parse: %v", name, err)
			}
			files[name] = string(b)
		}
	}
	return files, nil
}

// GenruleWorkspace returns the files of a workspace of n independent genrules.
func GenruleWorkspace(n int) (map[string]string, error) {
	if n < 1 || n > 100000 {
		return nil, fmt.Errorf("genrules=%d: want 1..100000", n)
	}
	var b strings.Builder
	b.WriteString("# Generated by bench/cmd/genws: independent tiny genrules.\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "\ngenrule(\n    name = \"g%04d\",\n    outs = [\"g%04d.txt\"],\n    cmd = \"echo %d > $@\",\n)\n", i, i, i)
	}
	return map[string]string{
		"WORKSPACE":   "workspace(name = \"genrules\")\n",
		"BUILD.bazel": b.String(),
	}, nil
}

func depsAttr(deps []string) string {
	if len(deps) == 0 {
		return ""
	}
	return "\n    deps = [\n" + strings.Join(deps, "\n") + "\n    ],"
}
