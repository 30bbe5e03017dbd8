package reapi_test

import (
	"bytes"
	"context"
	"net"
	"testing"

	lrpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/actioncache"
	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/reapi"
	"github.com/hallmark-build/hallmark/builder/scheduler"
)

type execFixture struct {
	cas     *blobstore.Memory
	sched   *scheduler.Scheduler
	results *actioncache.Memory
	client  repb.ExecutionClient
	ops     lrpb.OperationsClient
}

func newExecFixture(t *testing.T) *execFixture {
	f := &execFixture{cas: blobstore.NewMemory(), sched: scheduler.New(scheduler.Options{}), results: actioncache.NewMemory()}
	r, err := reapi.NewStaticResolver(&reapi.Instance{CAS: f.cas, ActionCache: f.results})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	reapi.RegisterExecution(g, reapi.NewExecutionServer(r, f.sched))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f.client = repb.NewExecutionClient(conn)
	f.ops = lrpb.NewOperationsClient(conn)
	return f
}

func (f *execFixture) put(t *testing.T, m proto.Message) digest.Digest {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.OfBytes(b)
	if err := f.cas.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

// action stores an action whose input root holds one file with content, and
// returns its digest and the file's digest (stored only if storeFile).
func (f *execFixture) action(t *testing.T, cmd *repb.Command, content string, storeFile bool) (digest.Digest, digest.Digest) {
	fd := digest.OfBytes([]byte(content))
	if storeFile {
		f.cas.Put(context.Background(), fd, bytes.NewReader([]byte(content)))
	}
	root := f.put(t, &repb.Directory{Files: []*repb.FileNode{{Name: "in.txt", Digest: fd.ToProto()}}})
	cd := f.put(t, cmd)
	return f.put(t, &repb.Action{CommandDigest: cd.ToProto(), InputRootDigest: root.ToProto()}), fd
}

func lastOp(t *testing.T, stream interface {
	Recv() (*lrpb.Operation, error)
}) (*lrpb.Operation, int) {
	var last *lrpb.Operation
	n := 0
	for {
		op, err := stream.Recv()
		if err != nil {
			if last == nil {
				t.Fatalf("stream ended before any operation: %v", err)
			}
			return last, n
		}
		last = op
		n++
	}
}

func response(t *testing.T, op *lrpb.Operation) *repb.ExecuteResponse {
	if !op.GetDone() {
		t.Fatalf("operation %s not done", op.GetName())
	}
	r := &repb.ExecuteResponse{}
	if err := op.GetResponse().UnmarshalTo(r); err != nil {
		t.Fatalf("operation %s has no ExecuteResponse: %v (error %v)", op.GetName(), err, op.GetError())
	}
	return r
}

var echo = &repb.Command{Arguments: []string{"/bin/true"}, OutputFiles: []string{"out/a"}}

func TestExecute(t *testing.T) {
	ctx := context.Background()
	t.Run("MissingInputsListed", func(t *testing.T) {
		f := newExecFixture(t)
		ad, fd := f.action(t, echo, "input", false)
		stream, err := f.client.Execute(ctx, &repb.ExecuteRequest{ActionDigest: ad.ToProto()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = stream.Recv()
		st := status.Convert(err)
		if st.Code() != codes.FailedPrecondition {
			t.Fatalf("code %v (%v), want FAILED_PRECONDITION", st.Code(), err)
		}
		var subjects []string
		for _, d := range st.Details() {
			if pf, ok := d.(*errdetails.PreconditionFailure); ok {
				for _, v := range pf.GetViolations() {
					if v.GetType() != "MISSING" {
						t.Errorf("violation type %q, want MISSING", v.GetType())
					}
					subjects = append(subjects, v.GetSubject())
				}
			}
		}
		if len(subjects) != 1 || subjects[0] != "blobs/"+fd.String() {
			t.Fatalf("violations %v, want exactly blobs/%s", subjects, fd)
		}
	})
	t.Run("MissingAction", func(t *testing.T) {
		f := newExecFixture(t)
		stream, _ := f.client.Execute(ctx, &repb.ExecuteRequest{ActionDigest: digest.OfBytes([]byte("nope")).ToProto()})
		if _, err := stream.Recv(); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("err %v, want FAILED_PRECONDITION", err)
		}
	})
	t.Run("BadRequests", func(t *testing.T) {
		f := newExecFixture(t)
		abs, _ := f.action(t, &repb.Command{Arguments: []string{"x"}, OutputFiles: []string{"/etc/passwd"}}, "i", true)
		dotdot, _ := f.action(t, &repb.Command{Arguments: []string{"x"}, OutputPaths: []string{"a/../../b"}}, "i", true)
		for name, req := range map[string]*repb.ExecuteRequest{
			"MalformedDigest": {ActionDigest: &repb.Digest{Hash: "xyz", SizeBytes: 3}},
			"NoDigest":        {},
			"UnknownFunction": {ActionDigest: abs.ToProto(), DigestFunction: repb.DigestFunction_MD5},
			"UnknownInstance": {ActionDigest: abs.ToProto(), InstanceName: "other"},
			"AbsoluteOutput":  {ActionDigest: abs.ToProto()},
			"EscapingOutput":  {ActionDigest: dotdot.ToProto()},
		} {
			t.Run(name, func(t *testing.T) {
				stream, _ := f.client.Execute(ctx, req)
				if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument {
					t.Fatalf("err %v, want INVALID_ARGUMENT", err)
				}
			})
		}
	})
	t.Run("CacheHit", func(t *testing.T) {
		f := newExecFixture(t)
		ad, _ := f.action(t, echo, "input", true)
		f.results.Put(ctx, "", ad, &repb.ActionResult{ExitCode: 0, StdoutRaw: []byte("cached")})
		stream, _ := f.client.Execute(ctx, &repb.ExecuteRequest{ActionDigest: ad.ToProto()})
		op, _ := lastOp(t, stream)
		r := response(t, op)
		if !r.GetCachedResult() || string(r.GetResult().GetStdoutRaw()) != "cached" {
			t.Fatalf("response %v, want the cached result", r)
		}
		if st := f.sched.Stats(); st.Queued != 0 {
			t.Fatal("a cache hit was queued for execution")
		}
	})
	t.Run("SkipCacheLookupExecutes", func(t *testing.T) {
		f := newExecFixture(t)
		ad, _ := f.action(t, echo, "input", true)
		f.results.Put(ctx, "", ad, &repb.ActionResult{ExitCode: 0})
		go func() {
			op, _ := f.sched.Next(ctx, "w", nil)
			f.sched.Finish(op, scheduler.Outcome{Response: &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: 7}}})
		}()
		stream, _ := f.client.Execute(ctx, &repb.ExecuteRequest{ActionDigest: ad.ToProto(), SkipCacheLookup: true})
		op, n := lastOp(t, stream)
		r := response(t, op)
		if r.GetCachedResult() || r.GetResult().GetExitCode() != 7 {
			t.Fatalf("response %v, want the executed result", r)
		}
		if n < 2 {
			t.Errorf("got %d operation updates, want QUEUED/EXECUTING before COMPLETED", n)
		}
	})
	t.Run("ConcurrentIdenticalMerged", func(t *testing.T) {
		f := newExecFixture(t)
		ad, _ := f.action(t, echo, "input", true)
		s1, _ := f.client.Execute(ctx, &repb.ExecuteRequest{ActionDigest: ad.ToProto()})
		first, _ := s1.Recv()
		s2, _ := f.client.Execute(ctx, &repb.ExecuteRequest{ActionDigest: ad.ToProto()})
		second, _ := s2.Recv()
		if first.GetName() != second.GetName() {
			t.Fatalf("operations %s and %s: identical concurrent actions were not merged", first.GetName(), second.GetName())
		}
		op, _ := f.sched.Next(ctx, "w", nil)
		f.sched.Finish(op, scheduler.Outcome{Response: &repb.ExecuteResponse{Result: &repb.ActionResult{}}})
		for _, s := range []repb.Execution_ExecuteClient{s1, s2} {
			last, _ := lastOp(t, s)
			response(t, last)
		}
		if st := f.sched.Stats(); st.Queued != 0 {
			t.Fatalf("%d tasks still queued: the merged request was queued twice", st.Queued)
		}
	})
	t.Run("WaitExecution", func(t *testing.T) {
		f := newExecFixture(t)
		ad, _ := f.action(t, echo, "input", true)
		s1, _ := f.client.Execute(ctx, &repb.ExecuteRequest{ActionDigest: ad.ToProto()})
		first, _ := s1.Recv()
		w, _ := f.client.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: first.GetName()})
		op, _ := f.sched.Next(ctx, "w", nil)
		f.sched.Finish(op, scheduler.Outcome{Response: &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: 2}}})
		last, _ := lastOp(t, w)
		if response(t, last).GetResult().GetExitCode() != 2 {
			t.Fatal("WaitExecution did not deliver the result")
		}
		got, err := f.ops.GetOperation(ctx, &lrpb.GetOperationRequest{Name: first.GetName()})
		if err != nil || !got.GetDone() {
			t.Fatalf("GetOperation: %v, %v", got, err)
		}
		w2, _ := f.client.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: "operations/unknown"})
		if _, err := w2.Recv(); status.Code(err) != codes.NotFound {
			t.Fatalf("unknown operation: %v, want NOT_FOUND", err)
		}
	})
}

func TestCheckRelativePath(t *testing.T) {
	for p, ok := range map[string]bool{"a": true, "a/b.o": true, "": false, "/a": false, "../a": false, "a/..": false, "a//b": false, "a/": false, "./a": false} {
		if err := reapi.CheckRelativePath(p); (err == nil) != ok {
			t.Errorf("CheckRelativePath(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

func FuzzValidateCommand(f *testing.F) {
	b, _ := proto.Marshal(&repb.Command{Arguments: []string{"/bin/true"}, OutputFiles: []string{"a/b"}, OutputPaths: []string{"c"}})
	f.Add(b)
	f.Add([]byte{0x0a, 0x00, 0x1a, 0x03, 0x2e, 0x2e, 0x2f})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd := &repb.Command{}
		if proto.Unmarshal(b, cmd) != nil {
			return
		}
		if reapi.ValidateCommand(cmd) != nil {
			return
		}
		for _, ps := range [][]string{cmd.GetOutputFiles(), cmd.GetOutputDirectories(), cmd.GetOutputPaths()} {
			for _, p := range ps {
				if reapi.CheckRelativePath(p) != nil {
					t.Fatalf("accepted output path %q", p)
				}
			}
		}
	})
}
