// Command tenancy measures issue 7's goals on this machine and prints them:
//
//  1. Fairness: a small tenant's build (a few REAPI Execute calls, a little
//     parallel) alone, then beside a large tenant's flood of Execute calls on
//     the same farm, and the ratio (goal: at most 1.3x).
//  2. Sandbox cost per action: a bare `runsc do /bin/true`, one /bin/true
//     action on the gVisor tier cold (sandbox.GVisor, a sandbox of its own)
//     and warm (a container in the tenant's running sandbox, see
//     sandbox.WithReuseKey), and one on the namespace tier (sandbox.Bwrap),
//     with the gVisor tier's cost as a multiple of the bare runsc launch
//     (goal: at most 1.5x).
//
// Run it as root (the sandboxes run actions as other uids):
//
//	go run ./bench/tenancy [-runsc .cache/runsc/runsc] [-n 20] [-small 12] [-flood 500]
//
// The farm runs in this process with its data in a temporary directory; the
// actions are `sleep` plus a write, so the fairness figure measures the
// scheduler, not CPU contention. The machine's load average is printed with
// the figures, since both depend on what else runs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/farm"
	"github.com/hallmark-build/hallmark/builder/sandbox"
	"github.com/hallmark-build/hallmark/builder/tenant"
)

func main() {
	runsc := flag.String("runsc", "", "runsc binary (default: .cache/runsc/runsc, or runsc in PATH)")
	n := flag.Int("n", 20, "launches per sandbox measurement")
	small := flag.Int("small", 12, "actions in the small tenant's build")
	smallJobs := flag.Int("small-jobs", 2, "the small tenant's parallel Execute calls")
	flood := flag.Int("flood", 500, "actions in the large tenant's flood")
	floodJobs := flag.Int("flood-jobs", 100, "the large tenant's parallel Execute calls")
	workers := flag.Int("workers", 4, "farm action slots")
	largeQuota := flag.Int("large-concurrent", 8, "the large tenant's concurrent_actions quota (8 is the default quota)")
	action := flag.Duration("action", 100*time.Millisecond, "how long each fairness action sleeps")
	only := flag.String("only", "", `"fair" or "sandbox" to run one part`)
	flag.Parse()
	if os.Geteuid() != 0 {
		fatal(errors.New("run as root: the sandboxes run actions as other uids"))
	}
	fmt.Printf("load average: %s", loadavg())
	if *only != "sandbox" {
		if err := fairness(*workers, *largeQuota, *small, *smallJobs, *flood, *floodJobs, *action); err != nil {
			fatal(err)
		}
	}
	if *only != "fair" {
		if err := sandboxCost(findRunsc(*runsc), *n); err != nil {
			fatal(err)
		}
	}
	fmt.Printf("load average: %s", loadavg())
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench/tenancy:", err)
	os.Exit(1)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown\n"
	}
	return string(b)
}

func findRunsc(flagged string) string {
	for _, p := range []string{flagged, os.Getenv("HALLMARK_RUNSC"), ".cache/runsc/runsc"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			abs, _ := filepath.Abs(p)
			return abs
		}
	}
	p, _ := exec.LookPath("runsc")
	return p
}

// tempDir makes a directory the sandbox uids can traverse.
func tempDir() (string, error) {
	d, err := os.MkdirTemp("", "hallmark-bench-tenancy-")
	if err != nil {
		return "", err
	}
	return d, os.Chmod(d, 0o755)
}

type stats struct{ median, mean time.Duration }

func measure(n int, f func() error) (stats, error) {
	if err := f(); err != nil { // warm-up, not counted
		return stats{}, err
	}
	ds := make([]time.Duration, 0, n)
	var sum time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := f(); err != nil {
			return stats{}, err
		}
		d := time.Since(start)
		ds = append(ds, d)
		sum += d
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return stats{median: ds[len(ds)/2], mean: sum / time.Duration(n)}, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func sandboxCost(runsc string, n int) error {
	dir, err := tempDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	spec := sandbox.Spec{Args: []string{"/bin/true"}, InputRoot: root, UID: 63000, GID: 63000,
		Limits: sandbox.Limits{Timeout: time.Minute, Processes: 1024, FileSizeBytes: 1 << 30}}
	run := func(r sandbox.Runner) func() error {
		return func() error {
			res, err := r.Run(context.Background(), spec)
			if err == nil && res.ExitCode != 0 {
				err = fmt.Errorf("/bin/true exited %d", res.ExitCode)
			}
			return err
		}
	}
	fmt.Printf("\nsandbox cost per action (/bin/true, %d sequential runs, median / mean)\n", n)
	bw, err := sandbox.NewBwrap(sandbox.WithCgroupName("hallmark-bench-tenancy"))
	if err != nil {
		return fmt.Errorf("namespace tier: %w", err)
	}
	ns, err := measure(n, run(bw))
	if err != nil {
		return fmt.Errorf("namespace tier: %w", err)
	}
	fmt.Printf("  namespace tier (bwrap)      %10s  %10s\n", ms(ns.median), ms(ns.mean))
	if runsc == "" {
		fmt.Println("  gVisor: runsc not found (make runsc, or -runsc PATH); skipped")
		return nil
	}
	bare, err := measure(n, func() error {
		cmd := exec.Command(runsc, "--network=none", "--root="+filepath.Join(dir, "do-root"), "do", "/bin/true")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s do /bin/true: %v: %s", runsc, err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bare runsc: %w", err)
	}
	fmt.Printf("  bare runsc do /bin/true     %10s  %10s   (%s)\n", ms(bare.median), ms(bare.mean), runsc)
	state := filepath.Join(dir, "gvisor")
	g, err := sandbox.NewGVisor(sandbox.WithRunscPath(runsc), sandbox.WithGVisorStateDir(state))
	if err != nil {
		return fmt.Errorf("gVisor tier: %w", err)
	}
	defer g.Close()
	gv, err := measure(n, run(g))
	if err != nil {
		return fmt.Errorf("gVisor tier: %w", err)
	}
	fmt.Printf("  gVisor tier, cold           %10s  %10s   (a sandbox per action)\n", ms(gv.median), ms(gv.mean))
	warmCtx := sandbox.WithReuseKey(context.Background(), "bench")
	wm, err := measure(n, func() error {
		res, err := g.Run(warmCtx, spec)
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("/bin/true exited %d", res.ExitCode)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("gVisor tier, warm: %w", err)
	}
	fmt.Printf("  gVisor tier, warm           %10s  %10s   (a container per action in the tenant's running sandbox)\n", ms(wm.median), ms(wm.mean))
	fmt.Printf("  cold / bare runsc           %9.2fx (goal <= 1.5x)\n", float64(gv.median)/float64(bare.median))
	fmt.Printf("  warm / bare runsc           %9.2fx\n", float64(wm.median)/float64(bare.median))
	fmt.Printf("  warm / namespace tier       %9.1fx\n", float64(wm.median)/float64(ns.median))
	return nil
}

const tenantsYAML = `
tenants:
  - name: small
    instance_names: [small]
    tokens: ["%s"]
  - name: large
    instance_names: [large]
    tokens: ["%s"]
    quotas: {concurrent_actions: %d}
`

func fairness(workers, largeQuota, small, smallJobs, flood, floodJobs int, action time.Duration) error {
	dir, err := tempDir()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg, err := tenant.Parse("bench.yaml", []byte(fmt.Sprintf(tenantsYAML, tenant.HashToken("small-token"), tenant.HashToken("large-token"), largeQuota)))
	if err != nil {
		return err
	}
	f, err := farm.New(farm.Config{DataDir: filepath.Join(dir, "data"), Workers: workers, Tenants: cfg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- f.Serve(ctx, lis, nil, time.Second) }()
	defer func() { cancel(); <-served }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	sc := &client{conn: conn, instance: "small", token: "small-token"}
	lc := &client{conn: conn, instance: "large", token: "large-token"}
	sleep := fmt.Sprintf("%.3f", action.Seconds())

	fmt.Printf("fairness: %d farm slots; small tenant: %d actions, %d at a time; large tenant: %d actions, %d at a time, concurrent_actions %d; each action: sleep %ss and write a file\n",
		workers, small, smallJobs, flood, floodJobs, largeQuota, sleep)
	build := func(phase string) (time.Duration, error) {
		start := time.Now()
		err := parallel(context.Background(), small, smallJobs, func(ctx context.Context, i int) error {
			return sc.run(ctx, fmt.Sprintf("sleep %s; echo %s-%d-%d > out", sleep, phase, i, time.Now().UnixNano()))
		})
		return time.Since(start), err
	}
	if _, err := build("warmup"); err != nil {
		return fmt.Errorf("small tenant: %w", err)
	}
	alone, err := build("alone")
	if err != nil {
		return fmt.Errorf("small tenant alone: %w", err)
	}
	fmt.Printf("  small tenant alone            %8.2f s\n", alone.Seconds())

	floodCtx, stopFlood := context.WithCancel(context.Background())
	var floodDone sync.WaitGroup
	var floodErr error
	var finished int64
	var mu sync.Mutex
	floodDone.Add(1)
	go func() {
		defer floodDone.Done()
		err := parallel(floodCtx, flood, floodJobs, func(ctx context.Context, i int) error {
			err := lc.run(ctx, fmt.Sprintf("sleep %s; echo flood-%d-%d > out", sleep, i, time.Now().UnixNano()))
			if err == nil {
				mu.Lock()
				finished++
				mu.Unlock()
			}
			return err
		})
		if err != nil && floodCtx.Err() == nil {
			floodErr = err
		}
	}()
	// Let the flood fill the large tenant's queue and the slots first.
	time.Sleep(time.Second + 2*action)
	beside, err := build("beside")
	mu.Lock()
	doneDuring := finished
	mu.Unlock()
	stopFlood()
	floodDone.Wait()
	if err != nil {
		return fmt.Errorf("small tenant beside the flood: %w", err)
	}
	if floodErr != nil {
		return fmt.Errorf("large tenant's flood: %w", floodErr)
	}
	fmt.Printf("  small tenant beside the flood %8.2f s  (the flood finished %d actions by then)\n", beside.Seconds(), doneDuring)
	fmt.Printf("  ratio                         %8.2fx (goal <= 1.3x)\n", beside.Seconds()/alone.Seconds())
	return nil
}

// parallel calls f(i) for i in [0,n) with at most jobs calls at once and
// returns the first error.
func parallel(ctx context.Context, n, jobs int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	return first
}

type client struct {
	conn     *grpc.ClientConn
	instance string
	token    string
}

func (c *client) ctx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
}

func (c *client) put(ctx context.Context, m proto.Message) (digest.Digest, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return digest.Digest{}, err
	}
	d := digest.OfBytes(b)
	resp, err := repb.NewContentAddressableStorageClient(c.conn).BatchUpdateBlobs(c.ctx(ctx), &repb.BatchUpdateBlobsRequest{
		InstanceName: c.instance, Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d.ToProto(), Data: b}}})
	if err != nil {
		return d, err
	}
	for _, r := range resp.GetResponses() {
		if r.GetStatus().GetCode() != 0 {
			return d, fmt.Errorf("upload %s: %s", d, r.GetStatus().GetMessage())
		}
	}
	return d, nil
}

// run executes one shell script as an action with output file "out" and
// waits for it; a non-zero exit is an error.
func (c *client) run(ctx context.Context, script string) error {
	root, err := c.put(ctx, &repb.Directory{})
	if err != nil {
		return err
	}
	cmd, err := c.put(ctx, &repb.Command{Arguments: []string{"/bin/sh", "-c", script}, OutputFiles: []string{"out"},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin:/usr/bin"}}})
	if err != nil {
		return err
	}
	ad, err := c.put(ctx, &repb.Action{CommandDigest: cmd.ToProto(), InputRootDigest: root.ToProto(), DoNotCache: true})
	if err != nil {
		return err
	}
	stream, err := repb.NewExecutionClient(c.conn).Execute(c.ctx(ctx), &repb.ExecuteRequest{InstanceName: c.instance, ActionDigest: ad.ToProto()})
	if err != nil {
		return err
	}
	var last *lrpb.Operation
	for {
		op, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		last = op
	}
	if last == nil || !last.GetDone() {
		return errors.New("Execute stream ended before the operation was done")
	}
	if e := last.GetError(); e != nil {
		return fmt.Errorf("Execute: %s", e.GetMessage())
	}
	resp := &repb.ExecuteResponse{}
	if err := last.GetResponse().UnmarshalTo(resp); err != nil {
		return err
	}
	if s := resp.GetStatus(); s.GetCode() != 0 {
		return fmt.Errorf("Execute: %s", s.GetMessage())
	}
	if code := resp.GetResult().GetExitCode(); code != 0 {
		return fmt.Errorf("action %q exited %d", script, code)
	}
	return nil
}
