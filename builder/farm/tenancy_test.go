package farm_test

import (
	"bytes"
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
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/farm"
	"github.com/hallmark-build/hallmark/builder/tenant"
)

const twoTenants = `
tenants:
  - name: alpha
    instance_names: [alpha]
    tokens: ["%s"]
    ring: sensitive
  - name: beta
    instance_names: [beta]
    tokens: ["%s"]
    ring: unhardened
    quotas: {cas_bytes: 1MiB, concurrent_actions: 1}
`

type tenantClient struct {
	t        *testing.T
	instance string
	token    string
	conn     *grpc.ClientConn
	cas      repb.ContentAddressableStorageClient
	exec     repb.ExecutionClient
	ac       repb.ActionCacheClient
	bs       bytestream.ByteStreamClient
	ops      lrpb.OperationsClient
}

func (c *tenantClient) ctx() context.Context {
	if c.token == "" {
		return context.Background()
	}
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+c.token)
}

func startTenantFarm(t *testing.T, config string) (*farm.Farm, string, func()) {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bwrap is not installed (apt-get install bubblewrap)")
	}
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	cfg, err := tenant.Parse("test.yaml", []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	f, err := farm.New(farm.Config{DataDir: dir, Workers: 2, Tenants: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
	return f, lis.Addr().String(), func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
}

func dial(t *testing.T, addr, instance, token string) *tenantClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &tenantClient{t: t, instance: instance, token: token, conn: conn,
		cas: repb.NewContentAddressableStorageClient(conn), exec: repb.NewExecutionClient(conn),
		ac: repb.NewActionCacheClient(conn), bs: bytestream.NewByteStreamClient(conn), ops: lrpb.NewOperationsClient(conn)}
}

func (c *tenantClient) upload(blobs ...[]byte) ([]digest.Digest, error) {
	req := &repb.BatchUpdateBlobsRequest{InstanceName: c.instance}
	var ds []digest.Digest
	for _, b := range blobs {
		d := digest.OfBytes(b)
		ds = append(ds, d)
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: d.ToProto(), Data: b})
	}
	resp, err := c.cas.BatchUpdateBlobs(c.ctx(), req)
	if err != nil {
		return nil, err
	}
	for _, r := range resp.GetResponses() {
		if r.GetStatus().GetCode() != 0 {
			return ds, status.ErrorProto(r.GetStatus())
		}
	}
	return ds, nil
}

func (c *tenantClient) mustUpload(blobs ...[]byte) []digest.Digest {
	c.t.Helper()
	ds, err := c.upload(blobs...)
	if err != nil {
		c.t.Fatalf("%s: upload: %v", c.instance, err)
	}
	return ds
}

func (c *tenantClient) message(m proto.Message) digest.Digest {
	b, err := proto.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.mustUpload(b)[0]
}

func (c *tenantClient) missing(ds ...digest.Digest) int {
	req := &repb.FindMissingBlobsRequest{InstanceName: c.instance}
	for _, d := range ds {
		req.BlobDigests = append(req.BlobDigests, d.ToProto())
	}
	resp, err := c.cas.FindMissingBlobs(c.ctx(), req)
	if err != nil {
		c.t.Fatalf("%s: FindMissingBlobs: %v", c.instance, err)
	}
	return len(resp.GetMissingBlobDigests())
}

// run executes script and returns the operation name and final response.
func (c *tenantClient) run(script string, outputs ...string) (string, *repb.ExecuteResponse, digest.Digest) {
	c.t.Helper()
	in := c.mustUpload([]byte("input\n"))[0]
	root := c.message(&repb.Directory{Files: []*repb.FileNode{{Name: "in.txt", Digest: in.ToProto()}}})
	cmd := c.message(&repb.Command{Arguments: []string{"/bin/sh", "-c", script}, OutputFiles: outputs,
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin:/usr/bin"}}})
	ad := c.message(&repb.Action{CommandDigest: cmd.ToProto(), InputRootDigest: root.ToProto()})
	stream, err := c.exec.Execute(c.ctx(), &repb.ExecuteRequest{InstanceName: c.instance, ActionDigest: ad.ToProto()})
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
			c.t.Fatalf("%s: Execute %q: %v", c.instance, script, err)
		}
		last = op
	}
	resp := &repb.ExecuteResponse{}
	if err := last.GetResponse().UnmarshalTo(resp); err != nil {
		c.t.Fatalf("Execute %q: no ExecuteResponse: %v (%v)", script, err, last.GetError())
	}
	return last.GetName(), resp, ad
}

func TestTenantIsolation(t *testing.T) {
	cfg := fmt.Sprintf(twoTenants, tenant.HashToken("token-alpha"), tenant.HashToken("token-beta"))
	_, addr, stop := startTenantFarm(t, cfg)
	defer stop()
	a := dial(t, addr, "alpha", "token-alpha")
	b := dial(t, addr, "beta", "token-beta")

	t.Run("Unauthenticated", func(t *testing.T) {
		for _, tok := range []string{"", "wrong"} {
			c := dial(t, addr, "alpha", tok)
			_, err := c.cas.FindMissingBlobs(c.ctx(), &repb.FindMissingBlobsRequest{InstanceName: "alpha"})
			if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "--remote_header=Authorization=Bearer") {
				t.Errorf("token %q: got %v, want UNAUTHENTICATED telling what to pass", tok, err)
			}
			_, err = c.exec.Execute(c.ctx(), &repb.ExecuteRequest{InstanceName: "alpha"})
			if err == nil {
				stream, _ := c.exec.Execute(c.ctx(), &repb.ExecuteRequest{InstanceName: "alpha"})
				_, err = stream.Recv()
			}
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("token %q: Execute got %v, want UNAUTHENTICATED", tok, err)
			}
		}
	})
	t.Run("OtherInstancePermissionDenied", func(t *testing.T) {
		_, err := b.cas.FindMissingBlobs(b.ctx(), &repb.FindMissingBlobsRequest{InstanceName: "alpha"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("beta on alpha's instance: got %v, want PERMISSION_DENIED", err)
		}
	})

	secret := []byte("alpha's secret blob")
	sd := a.mustUpload(secret)[0]
	t.Run("NoCASProbe", func(t *testing.T) {
		if a.missing(sd) != 0 {
			t.Fatal("alpha does not see its own blob")
		}
		if b.missing(sd) != 1 {
			t.Error("FindMissingBlobs tells beta that alpha holds the blob")
		}
		resp, err := b.cas.BatchReadBlobs(b.ctx(), &repb.BatchReadBlobsRequest{InstanceName: "beta", Digests: []*repb.Digest{sd.ToProto()}})
		if err != nil || codes.Code(resp.GetResponses()[0].GetStatus().GetCode()) != codes.NotFound {
			t.Errorf("beta BatchReadBlobs of alpha's blob: %v %v, want NOT_FOUND", resp, err)
		}
		rs, err := b.bs.Read(b.ctx(), &bytestream.ReadRequest{ResourceName: fmt.Sprintf("beta/blobs/%s/%d", sd.Hash, sd.Size)})
		if err == nil {
			_, err = rs.Recv()
		}
		if status.Code(err) != codes.NotFound {
			t.Errorf("beta ByteStream read of alpha's blob: %v, want NOT_FOUND", err)
		}
		// Uploading the same content joins beta's namespace only after
		// beta sent all of it; a wrong body is refused.
		if _, err := b.upload(secret); err != nil {
			t.Fatalf("beta uploading the same content: %v", err)
		}
		if b.missing(sd) != 0 {
			t.Error("beta's own upload is missing")
		}
	})

	opName, resp, ad := a.run("cat in.txt > out.txt; echo alpha >> out.txt", "out.txt")
	if resp.GetResult().GetExitCode() != 0 {
		t.Fatalf("alpha's action: %v", resp)
	}
	t.Run("PoolPlacement", func(t *testing.T) {
		if w := resp.GetResult().GetExecutionMetadata().GetWorker(); !strings.Contains(w, "production") {
			t.Errorf("sensitive tenant ran on %q, want a production worker", w)
		}
		_, bresp, _ := b.run("echo beta > out.txt", "out.txt")
		if w := bresp.GetResult().GetExecutionMetadata().GetWorker(); !strings.Contains(w, "development") {
			t.Errorf("unhardened tenant ran on %q, want a development worker", w)
		}
	})
	t.Run("OutputsJoinOwnerNamespace", func(t *testing.T) {
		out, _ := digest.FromProto(resp.GetResult().GetOutputFiles()[0].GetDigest())
		if a.missing(out) != 0 {
			t.Error("alpha's output is not in alpha's namespace")
		}
		if b.missing(out) != 1 {
			t.Error("alpha's output is visible to beta")
		}
	})
	t.Run("NoActionCacheCrossing", func(t *testing.T) {
		_, err := b.ac.GetActionResult(b.ctx(), &repb.GetActionResultRequest{InstanceName: "beta", ActionDigest: ad.ToProto()})
		if status.Code(err) != codes.NotFound {
			t.Errorf("beta got alpha's action result: %v", err)
		}
		if _, err := a.ac.GetActionResult(a.ctx(), &repb.GetActionResultRequest{InstanceName: "alpha", ActionDigest: ad.ToProto()}); err != nil {
			t.Errorf("alpha's own result: %v", err)
		}
		_, err = b.ac.UpdateActionResult(b.ctx(), &repb.UpdateActionResultRequest{InstanceName: "beta", ActionDigest: ad.ToProto(), ActionResult: &repb.ActionResult{}})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("beta (action_cache_writes: false) wrote its ActionCache: %v", err)
		}
	})
	t.Run("NoOperationCrossing", func(t *testing.T) {
		_, err := b.ops.GetOperation(b.ctx(), &lrpb.GetOperationRequest{Name: opName})
		if status.Code(err) != codes.NotFound {
			t.Errorf("beta GetOperation of alpha's operation: %v, want NOT_FOUND", err)
		}
		ws, err := b.exec.WaitExecution(b.ctx(), &repb.WaitExecutionRequest{Name: opName})
		if err == nil {
			_, err = ws.Recv()
		}
		if status.Code(err) != codes.NotFound {
			t.Errorf("beta WaitExecution of alpha's operation: %v, want NOT_FOUND", err)
		}
		if _, err := a.ops.GetOperation(a.ctx(), &lrpb.GetOperationRequest{Name: opName}); err != nil {
			t.Errorf("alpha's own operation: %v", err)
		}
	})
	t.Run("QuotaIsPerTenant", func(t *testing.T) {
		big := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }
		// Beta fills its 1 MiB three times over; its own LRU blobs go.
		var first digest.Digest
		for i := 0; i < 6; i++ {
			d := b.mustUpload(big(byte('a'+i), 400<<10))[0]
			if i == 0 {
				first = d
			}
		}
		if b.missing(first) != 1 {
			t.Error("beta's oldest blob was not evicted past its quota")
		}
		if a.missing(sd) != 0 {
			t.Error("beta filling its quota evicted alpha's blob")
		}
		_, err := b.upload(big('z', 2<<20))
		st := status.Convert(err)
		if st.Code() != codes.ResourceExhausted {
			t.Fatalf("beta uploading more than its whole quota: %v, want RESOURCE_EXHAUSTED", err)
		}
		var qf *errdetails.QuotaFailure
		for _, d := range st.Details() {
			if q, ok := d.(*errdetails.QuotaFailure); ok {
				qf = q
			}
		}
		if qf == nil || !strings.HasPrefix(qf.GetViolations()[0].GetDescription(), "cas_bytes") {
			t.Errorf("no QuotaFailure naming cas_bytes: %v", st.Details())
		}
		// Alpha is unaffected.
		a.mustUpload(big('q', 2<<20))
	})
}

func TestTenantConfigReload(t *testing.T) {
	cfg := fmt.Sprintf(twoTenants, tenant.HashToken("token-alpha"), tenant.HashToken("token-beta"))
	f, addr, stop := startTenantFarm(t, cfg)
	defer stop()
	// Rotate alpha's token.
	next, err := tenant.Parse("next.yaml", []byte(fmt.Sprintf(twoTenants, tenant.HashToken("token-alpha-2"), tenant.HashToken("token-beta"))))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(next); err != nil {
		t.Fatal(err)
	}
	old := dial(t, addr, "alpha", "token-alpha")
	if _, err := old.upload([]byte("x")); status.Code(err) != codes.Unauthenticated {
		t.Errorf("revoked token: %v, want UNAUTHENTICATED", err)
	}
	if _, err := dial(t, addr, "alpha", "token-alpha-2").upload([]byte("x")); err != nil {
		t.Errorf("new token: %v", err)
	}
	// A configuration needing a pool the farm has no worker for is refused.
	bad, err := tenant.Parse("bad.yaml", []byte(fmt.Sprintf(`
tenants:
  - name: core
    instance_names: [core]
    tokens: ["%s"]
    ring: foundational
`, tenant.HashToken("c"))))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(bad); err == nil {
		t.Error("a reload needing a new foundational worker was accepted")
	}
	if _, err := dial(t, addr, "alpha", "token-alpha-2").upload([]byte("y")); err != nil {
		t.Errorf("after a refused reload the old config must stay: %v", err)
	}
}
