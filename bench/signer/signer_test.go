// Package signer_test benchmarks the signer: signing throughput, and making a
// manifest (statement, encoding, DSSE signature, verification) for a
// synthetic 5,000-action build. Run with
//
//	go test ./bench/signer -bench . -benchtime 3x
package signer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/signer/dsse"
	"github.com/hallmark-build/hallmark/signer/key"
	"github.com/hallmark-build/hallmark/signer/provenance"
)

func newKey(b testing.TB) key.Signer {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	s, err := key.NewECDSA(priv)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// syntheticFacts is a build of n actions, each with a realistic command line
// and environment.
func syntheticFacts(n int) provenance.Facts {
	f := provenance.Facts{
		Artifacts:  []provenance.Artifact{{Name: "bazel-bin/app/app", Digest: digest.OfBytes([]byte("app"))}},
		Targets:    []string{"//app"},
		Commit:     "0123456789abcdef0123456789abcdef01234567",
		FarmID:     "bench",
		Tenant:     "bench",
		BuilderID:  "https://hallmark.build/farm/bench",
		StartedOn:  time.Unix(0, 0),
		FinishedOn: time.Unix(60, 0),
		Counts:     provenance.Counts{Generated: 2 * n, Source: n, ThirdParty: 500},
	}
	for i := 0; i < n; i++ {
		out := fmt.Sprintf("bazel-out/k8-fastbuild/bin/pkg%d/lib%d.a", i/50, i)
		f.Actions = append(f.Actions, provenance.Action{
			Digest:   digest.OfBytes([]byte(fmt.Sprint("action", i))),
			Mnemonic: "GoCompilePkg",
			Arguments: []string{"bazel-out/host/bin/external/go_sdk/builder", "compilepkg", "-sdk", "external/go_sdk",
				"-installsuffix", "linux_amd64", "-src", fmt.Sprintf("pkg%d/file%d.go", i/50, i), "-importpath", fmt.Sprintf("example.com/pkg%d", i/50),
				"-o", out, "-gcflags", ""},
			Environment: []provenance.EnvVar{{Name: "CGO_ENABLED", Value: "0"}, {Name: "GOARCH", Value: "amd64"}, {Name: "GOOS", Value: "linux"}, {Name: "PATH", Value: "/bin:/usr/bin"}},
			Outputs:     []string{out},
		})
	}
	return f
}

func BenchmarkSign(b *testing.B) {
	s := newKey(b)
	ctx := context.Background()
	msg := dsse.PAE(dsse.PayloadTypeInToto, make([]byte, 4096))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Sign(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkManifest5000Actions(b *testing.B) {
	s := newKey(b)
	v, err := dsse.NewVerifier(s.Public())
	if err != nil {
		b.Fatal(err)
	}
	facts := syntheticFacts(5000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	var size int
	var last []byte
	for i := 0; i < b.N; i++ {
		st, err := provenance.Build(facts)
		if err != nil {
			b.Fatal(err)
		}
		payload, err := st.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		env, err := dsse.Sign(ctx, dsse.PayloadTypeInToto, payload, s)
		if err != nil {
			b.Fatal(err)
		}
		out, err := env.MarshalJSON()
		if err != nil {
			b.Fatal(err)
		}
		size = len(out)
		last = out
	}
	b.StopTimer()
	parsed, err := dsse.Parse(last)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := parsed.Verify(dsse.PayloadTypeInToto, v); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(size), "envelope-bytes")
}

// TestManifest5000UnderOneSecond holds the goal: a 5,000-action manifest
// built, signed and verified in under a second.
func TestManifest5000UnderOneSecond(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test skipped in -short mode")
	}
	r := testing.Benchmark(BenchmarkManifest5000Actions)
	if per := time.Duration(r.NsPerOp()); per > time.Second {
		t.Errorf("5,000-action manifest took %v, goal < 1s", per)
	} else {
		t.Logf("5,000-action manifest: %v per manifest", per)
	}
}
