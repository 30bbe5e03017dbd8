package farm_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/execlog"
	"github.com/hallmark-build/hallmark/builder/farm"
)

// client talks to a farm started in-process on a loopback port.
type client struct {
	t    *testing.T
	addr string
	cas  repb.ContentAddressableStorageClient
	exec repb.ExecutionClient
	ac   repb.ActionCacheClient
}

func startFarm(t *testing.T, dir string) (*client, func()) {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bwrap is not installed (apt-get install bubblewrap)")
	}
	// Sandboxed actions run as unprivileged uids that must be able to reach
	// the data directory; t.TempDir makes its parents 0700.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	f, err := farm.New(farm.Config{DataDir: dir, Workers: 2, ClientActionCacheWrites: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, lis, nil, 5*time.Second) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, addr: lis.Addr().String(), cas: repb.NewContentAddressableStorageClient(conn), exec: repb.NewExecutionClient(conn), ac: repb.NewActionCacheClient(conn)}
	stop := func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	return c, stop
}

func (c *client) upload(blobs ...[]byte) []digest.Digest {
	req := &repb.BatchUpdateBlobsRequest{}
	var ds []digest.Digest
	for _, b := range blobs {
		d := digest.OfBytes(b)
		ds = append(ds, d)
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: d.ToProto(), Data: b})
	}
	resp, err := c.cas.BatchUpdateBlobs(context.Background(), req)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, r := range resp.GetResponses() {
		if r.GetStatus().GetCode() != 0 {
			c.t.Fatalf("upload %v: %v", r.GetDigest(), r.GetStatus())
		}
	}
	return ds
}

func (c *client) message(m proto.Message) digest.Digest {
	b, err := proto.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.upload(b)[0]
}

// run executes a shell script as an action with one input file and the
// given outputs, and returns the final ExecuteResponse.
func (c *client) run(script string, timeout time.Duration, outputs ...string) (*repb.ExecuteResponse, digest.Digest) {
	in := c.upload([]byte("input\n"))[0]
	root := c.message(&repb.Directory{Files: []*repb.FileNode{{Name: "in.txt", Digest: in.ToProto()}}})
	cmd := c.message(&repb.Command{Arguments: []string{"/bin/sh", "-c", script}, OutputFiles: outputs,
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin:/usr/bin"}}})
	action := &repb.Action{CommandDigest: cmd.ToProto(), InputRootDigest: root.ToProto()}
	if timeout > 0 {
		action.Timeout = durationpb.New(timeout)
	}
	ad := c.message(action)
	stream, err := c.exec.Execute(context.Background(), &repb.ExecuteRequest{ActionDigest: ad.ToProto(), SkipCacheLookup: true})
	if err != nil {
		c.t.Fatal(err)
	}
	var last *lrpb.Operation
	for {
		op, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			c.t.Fatalf("Execute %q: %v", script, err)
		}
		last = op
	}
	resp := &repb.ExecuteResponse{}
	if err := last.GetResponse().UnmarshalTo(resp); err != nil {
		c.t.Fatalf("Execute %q: no ExecuteResponse: %v", script, err)
	}
	return resp, ad
}

func (c *client) read(d *repb.Digest) string {
	if d.GetHash() == "" || d.GetSizeBytes() == 0 {
		return ""
	}
	resp, err := c.cas.BatchReadBlobs(context.Background(), &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{d}})
	if err != nil {
		c.t.Fatal(err)
	}
	return string(resp.GetResponses()[0].GetData())
}

func TestFarmExecutesLogsAndCaches(t *testing.T) {
	dir := t.TempDir()
	c, stop := startFarm(t, dir)
	resp, ad := c.run("mkdir -p out && tr a-z A-Z < in.txt > out/up && echo done", 0, "out/up")
	res := resp.GetResult()
	if resp.GetStatus().GetCode() != 0 || res.GetExitCode() != 0 {
		t.Fatalf("status %v exit %d stderr %q", resp.GetStatus(), res.GetExitCode(), c.read(res.GetStderrDigest()))
	}
	if len(res.GetOutputFiles()) != 1 || c.read(res.GetOutputFiles()[0].GetDigest()) != "INPUT\n" {
		t.Fatalf("outputs %v, want out/up = INPUT", res.GetOutputFiles())
	}
	if got := c.read(res.GetStdoutDigest()); got != "done\n" {
		t.Errorf("stdout %q", got)
	}
	if _, err := c.ac.GetActionResult(context.Background(), &repb.GetActionResultRequest{ActionDigest: ad.ToProto()}); err != nil {
		t.Errorf("the farm did not cache its result: %v", err)
	}
	stop()

	r, err := execlog.OpenReadOnly(dir + "/log")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := digest.FromProto(res.GetOutputFiles()[0].GetDigest())
	recs := r.Lookup(out)
	if len(recs) != 1 || recs[0].Action != ad || recs[0].Outputs[0].Path != "out/up" {
		t.Fatalf("log records for the output: %+v", recs)
	}
	if err := r.Verify(recs[0].Seq); err != nil {
		t.Fatalf("log chain: %v", err)
	}
}

// TestFarmSandboxPromises runs hostile actions through the gRPC front door:
// each fails the way the sandbox promises, and the farm keeps serving.
func TestFarmSandboxPromises(t *testing.T) {
	c, stop := startFarm(t, t.TempDir())
	defer stop()
	_, port, _ := net.SplitHostPort(c.addr)
	for _, tc := range []struct {
		name, script string
		timeout      time.Duration
		wantTimeout  bool
	}{
		{"ConnectToFarm", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%s && echo connected", port), 0, false},
		{"WriteInput", "echo x > in.txt", 0, false},
		{"WriteAboveRoot", "echo x > ../escape", 0, false},
		{"WriteSystemRoot", "echo x > /escape || echo x > /usr/escape || echo x > /etc/escape", 0, false},
		{"ListRoot", "ls /root", 0, false},
		{"ListFarmData", "ls /tmp/.. /work /srv 2>&1; ls " + t.TempDir(), 0, false},
		{"ForkBomb", "b() { b | b & }; b; sleep 5; exit 0", 3 * time.Second, true},
		{"PastTimeout", "sleep 60", time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *c
			c.t = t
			if tc.name == "ConnectToFarm" {
				if _, err := exec.LookPath("bash"); err != nil {
					t.Skip("no bash")
				}
				tc.script = "exec /bin/bash -c '" + tc.script + "'"
			}
			start := time.Now()
			resp, _ := c.run(tc.script, tc.timeout)
			res := resp.GetResult()
			timedOut := codes.Code(resp.GetStatus().GetCode()) == codes.DeadlineExceeded
			if tc.wantTimeout {
				if !timedOut && res.GetExitCode() == 0 {
					t.Fatalf("status %v exit %d: want the action killed", resp.GetStatus(), res.GetExitCode())
				}
				if time.Since(start) > tc.timeout+20*time.Second {
					t.Fatalf("took %v, far past the %v timeout", time.Since(start), tc.timeout)
				}
				return
			}
			if res.GetExitCode() == 0 {
				t.Fatalf("exit 0, stdout %q: the action was not stopped", c.read(res.GetStdoutDigest()))
			}
		})
	}
	// Still serving.
	resp, _ := c.run("echo ok", 0)
	if resp.GetResult().GetExitCode() != 0 || c.read(resp.GetResult().GetStdoutDigest()) != "ok\n" {
		t.Fatalf("after the hostile actions the farm answered %v", resp)
	}
	if out, _ := exec.Command("pgrep", "-f", "sleep 60").Output(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("a killed action left processes behind: %s", out)
	}
}
