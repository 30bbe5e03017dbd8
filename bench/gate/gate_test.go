// Package gate_test measures the deploy gate: decision latency with warm
// caches (goal: p99 under 5 ms) and admission webhook throughput.
//
//	go test ./bench/gate/ -run TestDecisionLatency -v
//	go test ./bench/gate/ -run XXX -bench . -benchtime 2s
package gate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/gate"
	"github.com/hallmark-build/hallmark/gate/policy"
	"github.com/hallmark-build/hallmark/gate/verify"
	"github.com/hallmark-build/hallmark/gate/webhook"
	"github.com/hallmark-build/hallmark/signer/dsse"
	"github.com/hallmark-build/hallmark/signer/publish"
	"github.com/hallmark-build/hallmark/signer/publish/publishtest"
)

const benchPolicy = `apiVersion: hallmark.dev/gate/v1
global:
  defaults:
    builders: ["https://hallmark.build/farm/test"]
    requireThirdPartyAllowlisted: true
    toleratedClientWritten: ["bazel-out/**/*.params"]
    maxAge: 24h
identities:
  prod/frontend:
    sources:
      - repository: https://git.example.com/mono
        pathPrefixes: ["services/frontend"]
`

type setup struct {
	g   *gate.Gate
	ref string
}

func newSetup(tb testing.TB) setup {
	host := publishtest.Registry(tb, true)
	key := publishtest.NewKey(tb)
	dir, dig, size := publishtest.Layout(tb, tb.TempDir(), publishtest.Image(tb))
	if _, err := publish.Push(context.Background(), dir, publishtest.Sign(tb, key, publishtest.Facts(dig.Hex, size, time.Now().Add(-time.Hour))), host+"/team/frontend:v1"); err != nil {
		tb.Fatal(err)
	}
	kv, _ := verify.KeyFromPEM(key.PublicPEM())
	v, _ := verify.New(verify.StaticTrust{Verifiers: []dsse.Verifier{kv}})
	p, err := policy.Parse([]byte(benchPolicy))
	if err != nil {
		tb.Fatal(err)
	}
	g, _ := gate.New(v, p)
	ref := host + "/team/frontend@" + dig.String()
	if d := g.Check(context.Background(), gate.Request{Identity: "prod/frontend", Image: ref}); !d.Allow {
		tb.Fatalf("setup image denied: %v", d.Reasons())
	}
	return setup{g, ref}
}

// TestDecisionLatency reports p50/p99 of a warm gate decision (verified
// facts cached, policy evaluated, no audit I/O).
func TestDecisionLatency(t *testing.T) {
	s := newSetup(t)
	const n = 20000
	lat := make([]time.Duration, n)
	ctx := context.Background()
	for i := range lat {
		start := time.Now()
		d := s.g.Check(ctx, gate.Request{Identity: "prod/frontend", Image: s.ref})
		lat[i] = time.Since(start)
		if !d.Allow {
			t.Fatal("denied")
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p50, p99 := lat[n/2], lat[n*99/100]
	t.Logf("warm decision latency over %d decisions: p50 %s, p99 %s, max %s (goal p99 < 5ms)", n, p50, p99, lat[n-1])
	if p99 > 5*time.Millisecond {
		t.Errorf("p99 %s is over the 5 ms goal", p99)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	p, _ := policy.Parse([]byte(benchPolicy))
	now := time.Now()
	f := policy.Facts{Identity: "prod/frontend", BuilderID: "https://hallmark.build/farm/test", SourceRepository: "https://git.example.com/mono",
		Targets: []string{"//services/frontend:image"}, FinishedOn: now.Add(-time.Hour),
		ClientWritten: []policy.Input{{Path: "bazel-out/k8-fastbuild/bin/services/frontend/x.params"}}}
	b.ReportAllocs()
	for b.Loop() {
		if !policy.Evaluate(p, f, now).Allow {
			b.Fatal("denied")
		}
	}
}

func BenchmarkWarmCheck(b *testing.B) {
	s := newSetup(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s.g.Check(ctx, gate.Request{Identity: "prod/frontend", Image: s.ref})
	}
}

// BenchmarkWebhook measures AdmissionReview round trips over TLS with warm
// caches, from 8 concurrent clients; reviews/s is the throughput.
func BenchmarkWebhook(b *testing.B) {
	s := newSetup(b)
	srv := httptest.NewTLSServer(webhook.New(s.g))
	defer srv.Close()
	body := review(s.ref)
	client := srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 16
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				var rv webhook.Review
				json.NewDecoder(resp.Body).Decode(&rv)
				resp.Body.Close()
				if rv.Response == nil || !rv.Response.Allowed {
					b.Error("denied")
					return
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reviews/s")
}

func review(image string) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"prod","operation":"CREATE","userInfo":{"username":"admin"},"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"prod"},"spec":{"serviceAccountName":"frontend","containers":[{"name":"web","image":%q}]}},"dryRun":false}}`, image))
}
