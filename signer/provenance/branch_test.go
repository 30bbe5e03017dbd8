package provenance_test

import (
	"testing"

	"github.com/hallmark-build/hallmark/gate/verify"
	"github.com/hallmark-build/hallmark/signer/provenance"
)

// TestProtectedBranchAnnotation: the protected branch the commit was
// verified on is the "source" dependency's annotation, which is what the
// gate reads for requireProtectedBranch; without one there is no annotation.
func TestProtectedBranchAnnotation(t *testing.T) {
	for _, tc := range []struct {
		name, branch string
		wantAnn      string
	}{
		{"Recorded", "main", `{"protectedBranch":"main"}`},
		{"ReleaseBranch", "release/v2", `{"protectedBranch":"release/v2"}`},
		{"NotChecked", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := sampleFacts()
			f.ProtectedBranch = tc.branch
			st, err := provenance.Build(f)
			if err != nil {
				t.Fatal(err)
			}
			src := st.Predicate.BuildDefinition.ResolvedDependencies[0]
			if src.Name != "source" || string(src.Annotations) != tc.wantAnn {
				t.Fatalf("source dependency %q annotations %s, want %s", src.Name, src.Annotations, tc.wantAnn)
			}
			// Round trip through the statement's JSON, as a gate sees it.
			b, err := st.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := provenance.Parse(b)
			if err != nil {
				t.Fatalf("parsing the statement with a branch annotation: %v", err)
			}
			if got := verify.FactsOf(parsed).ProtectedBranch; got != tc.branch {
				t.Fatalf("the gate reads protected branch %q, want %q", got, tc.branch)
			}
		})
	}
}
