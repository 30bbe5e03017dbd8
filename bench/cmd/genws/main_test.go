package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestGoWorkspaceDeterministic(t *testing.T) {
	a, err := GoWorkspace(6, 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GoWorkspace(6, 10, 3)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two generations with the same flags differ")
	}
	builds := 0
	for name := range a {
		if strings.HasSuffix(name, "/BUILD.bazel") && strings.HasPrefix(name, "l") {
			builds++
		}
	}
	tests := 0
	for name := range a {
		if strings.HasSuffix(name, "_test.go") {
			tests++
		}
	}
	if tests != 20 {
		t.Errorf("got %d test files, want 20 (every third package)", tests)
	}
	if builds != 60 {
		t.Errorf("got %d library packages, want 60", builds)
	}
	if !strings.Contains(a["l1/p09/BUILD.bazel"], `"//l0/p00"`) {
		t.Errorf("l1/p09 should depend on l0/p00 (wraps around):\n%s", a["l1/p09/BUILD.bazel"])
	}
	if _, err := GoWorkspace(0, 10, 3); err == nil {
		t.Error("GoWorkspace(0, 10, 3) succeeded, want an error")
	}
}

func TestGenruleWorkspace(t *testing.T) {
	f, err := GenruleWorkspace(500)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(f["BUILD.bazel"], "genrule("); got != 500 {
		t.Errorf("%d genrules, want 500", got)
	}
	if _, err := GenruleWorkspace(0); err == nil {
		t.Error("GenruleWorkspace(0) succeeded, want an error")
	}
}
