package trace_test

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/signer/source"
	"github.com/hallmark-build/hallmark/signer/trace"
)

// BenchmarkTrace5000 traces one artifact whose graph has 5,000 logged
// actions: action i reads a committed source file, the SDK, a client-written
// params file and the outputs of actions i-1 and i/2. Each iteration opens
// the farm afresh (loading and verifying the whole log) and traces.
func BenchmarkTrace5000(b *testing.B) {
	const n = 5000
	files := map[string]string{}
	for i := 0; i < 100; i++ {
		files[fmt.Sprintf("src/f%d.go", i)] = fmt.Sprintf("package f%d\n", i)
	}
	repoDir, commit := gitRepo(b, files)
	f := newFarm(b)
	f.direct = true
	out := func(i int) string { return fmt.Sprintf("bazel-out/k8/bin/o%d", i) }
	content := func(i int) string { return fmt.Sprintf("output %d", i) }
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				in := map[string]string{
					fmt.Sprintf("src/f%d.go", i%100): files[fmt.Sprintf("src/f%d.go", i%100)],
					"external/go_sdk/bin/go":         "GO",
					"external/go_sdk/pkg/tool/link":  "LINK",
					"bazel-out/k8/bin/p.params":      fmt.Sprintf("params %d", i%10),
				}
				if i > 0 {
					in[out(i-1)] = content(i - 1)
					in[out(i/2)] = content(i / 2)
				}
				f.run("Go", in, map[string]string{out(i): content(i)}, "acme", "inv")
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	ctx := context.Background()
	repo, err := source.Open(ctx, repoDir, "main")
	if err != nil {
		b.Fatal(err)
	}
	req := trace.Request{Tenant: "acme", Commit: commit, Artifacts: []trace.Artifact{{Name: "o", Digest: digest.OfBytes([]byte(content(n - 1)))}}}
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		farm, err := trace.OpenFarm(f.dir)
		if err != nil {
			b.Fatal(err)
		}
		tr, err := trace.New(farm.Log, farm.CAS, trace.GitSources(repo))
		if err != nil {
			b.Fatal(err)
		}
		res, err := tr.Trace(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Actions) != n || res.Counts.Source != 100 || res.Counts.ClientWritten != 10 {
			b.Fatalf("traced %d actions, counts %+v", len(res.Actions), res.Counts)
		}
	}
	b.StopTimer()
	// CPU time is a steadier measure than wall time on a shared machine.
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) / time.Duration(b.N)
	b.ReportMetric(float64(cpu.Milliseconds()), "cpu-ms/op")
}
