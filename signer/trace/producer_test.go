package trace_test

import (
	"context"
	"testing"

	"github.com/hallmark-build/hallmark/signer/trace"
)

// TestTracePrefersTheProducerTheConsumerRead: after the build, an
// uncommitted edit of src/lib.go happened to compile to the same lib.a and
// was logged later. The link read the lib.a of the committed source (that
// action completed before the link started), so the app is still traced to
// the commit; the later record must not make the trace refuse.
func TestTracePrefersTheProducerTheConsumerRead(t *testing.T) {
	w := build(t, sources["src/main.go"])
	w.f.run("GoCompile", map[string]string{
		"src/lib.go": "package lib // an uncommitted edit\n", sdk: "GO", "bazel-out/k8/bin/lib.params": "-o lib.a",
	}, map[string]string{"bazel-out/k8/bin/lib.a": "LIBA"}, "acme", "inv-2")
	res, err := w.tracer(t).Trace(context.Background(), trace.Request{Tenant: "acme", Artifacts: appArtifact(), Commit: w.commit})
	if err != nil {
		t.Fatalf("trace refused though the link's input came from the committed source: %v", err)
	}
	if len(res.Actions) != 2 || res.Actions[0].Digest != w.lib.Action {
		t.Fatalf("actions = %+v, want the committed compile and the link", res.Actions)
	}
}
