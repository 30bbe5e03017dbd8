package reapi_test

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/digest"
)

func TestActionCache(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	action := digest.OfBytes([]byte("action"))
	out := f.put(t, []byte("output file"))
	stdout := f.put(t, []byte("stdout text"))
	file := f.put(t, []byte("inside a tree"))
	tree := f.putProto(t, &repb.Tree{Root: &repb.Directory{Files: []*repb.FileNode{{Name: "x", Digest: file.ToProto()}}}})
	ar := &repb.ActionResult{
		OutputFiles:       []*repb.OutputFile{{Path: "out", Digest: out.ToProto()}},
		OutputDirectories: []*repb.OutputDirectory{{Path: "dir", TreeDigest: tree.ToProto()}},
		StdoutDigest:      stdout.ToProto(),
		ExitCode:          0,
	}

	_, err := f.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.ToProto()})
	wantCode(t, err, codes.NotFound, action.Hash)

	t.Run("UpdateRejects", func(t *testing.T) {
		absent := digest.OfBytes([]byte("never uploaded"))
		absentTree := &repb.Tree{Root: &repb.Directory{Files: []*repb.FileNode{{Name: "y", Digest: absent.ToProto()}}}}
		for _, tc := range []struct {
			name string
			req  *repb.UpdateActionResultRequest
			code codes.Code
			msg  string
		}{
			{"ReadOnlyInstance", &repb.UpdateActionResultRequest{InstanceName: "ro", ActionDigest: action.ToProto(), ActionResult: ar}, codes.PermissionDenied, "does not accept ActionCache writes"},
			{"BadActionDigest", &repb.UpdateActionResultRequest{ActionDigest: bad, ActionResult: ar}, codes.InvalidArgument, "action_digest"},
			{"NoResult", &repb.UpdateActionResultRequest{ActionDigest: action.ToProto()}, codes.InvalidArgument, "action_result"},
			{"BadOutputDigest", &repb.UpdateActionResultRequest{ActionDigest: action.ToProto(), ActionResult: &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "o", Digest: bad}}}}, codes.InvalidArgument, `"o"`},
			{"MissingOutput", &repb.UpdateActionResultRequest{ActionDigest: action.ToProto(), ActionResult: &repb.ActionResult{StderrDigest: absent.ToProto()}}, codes.FailedPrecondition, absent.Hash},
			{"MissingInTree", &repb.UpdateActionResultRequest{ActionDigest: action.ToProto(), ActionResult: &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "d", TreeDigest: f.putProto(t, absentTree).ToProto()}}}}, codes.FailedPrecondition, absent.Hash},
			{"SHA1", &repb.UpdateActionResultRequest{ActionDigest: action.ToProto(), ActionResult: ar, DigestFunction: repb.DigestFunction_SHA1}, codes.InvalidArgument, "SHA1"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := f.ac.UpdateActionResult(ctx, tc.req)
				wantCode(t, err, tc.code, tc.msg)
				if tc.code == codes.FailedPrecondition {
					pf, ok := status.Convert(err).Details()[0].(*errdetails.PreconditionFailure)
					if !ok || len(pf.Violations) != 1 || pf.Violations[0].Type != "MISSING" || pf.Violations[0].Subject != "blobs/"+absent.String() {
						t.Fatalf("details = %v", status.Convert(err).Details())
					}
				}
			})
		}
		if _, err := f.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.ToProto()}); status.Code(err) != codes.NotFound {
			t.Fatalf("a rejected update was stored: %v", err)
		}
	})

	got, err := f.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.ToProto(), ActionResult: ar})
	if err != nil || !proto.Equal(got, ar) {
		t.Fatalf("UpdateActionResult = %v, %v", got, err)
	}

	t.Run("Get", func(t *testing.T) {
		got, err := f.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.ToProto()})
		if err != nil || !proto.Equal(got, ar) {
			t.Fatalf("GetActionResult = %v, %v", got, err)
		}
		if _, err := f.ac.GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "ro", ActionDigest: action.ToProto()}); status.Code(err) != codes.NotFound {
			t.Fatalf("instance ro sees instance \"\"'s result: %v", err)
		}
	})
	t.Run("Inline", func(t *testing.T) {
		got, err := f.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.ToProto(), InlineStdout: true, InlineOutputFiles: []string{"out"}})
		if err != nil {
			t.Fatal(err)
		}
		if string(got.StdoutRaw) != "stdout text" || string(got.OutputFiles[0].Contents) != "output file" {
			t.Fatalf("inlined stdout %q, file %q", got.StdoutRaw, got.OutputFiles[0].Contents)
		}
		plain, _ := f.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.ToProto()})
		if len(plain.StdoutRaw) != 0 || len(plain.OutputFiles[0].Contents) != 0 {
			t.Fatal("inlined without being asked")
		}
	})
	t.Run("InlinedUpdateNotKept", func(t *testing.T) {
		a3 := digest.OfBytes([]byte("action 3"))
		r3 := &repb.ActionResult{StdoutDigest: stdout.ToProto(), StdoutRaw: []byte("stdout text"),
			OutputFiles: []*repb.OutputFile{{Path: "out", Digest: out.ToProto(), Contents: []byte("output file")}}}
		if _, err := f.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: a3.ToProto(), ActionResult: r3}); err != nil {
			t.Fatal(err)
		}
		got, err := f.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: a3.ToProto()})
		if err != nil || len(got.StdoutRaw) != 0 || len(got.OutputFiles[0].Contents) != 0 {
			t.Fatalf("GetActionResult without inlining = %v, %v; want no inline bytes", got, err)
		}
	})
	t.Run("InlineBudget", func(t *testing.T) {
		big := f.put(t, make([]byte, 200)) // the server inlines at most 100 bytes
		a2 := digest.OfBytes([]byte("action 2"))
		r2 := &repb.ActionResult{StdoutDigest: big.ToProto()}
		if _, err := f.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: a2.ToProto(), ActionResult: r2}); err != nil {
			t.Fatal(err)
		}
		got, err := f.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: a2.ToProto(), InlineStdout: true})
		if err != nil || len(got.StdoutRaw) != 0 {
			t.Fatalf("GetActionResult = %d inlined bytes, %v; want none over the budget", len(got.GetStdoutRaw()), err)
		}
	})
	t.Run("IncompleteIsNotFound", func(t *testing.T) {
		if err := f.cas.Delete(ctx, file); err != nil {
			t.Fatal(err)
		}
		_, err := f.ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.ToProto()})
		wantCode(t, err, codes.NotFound, "incomplete")
	})
}

func TestCapabilities(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	for _, tc := range []struct {
		instance string
		update   bool
	}{{"", true}, {"ro", false}} {
		c, err := f.caps.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: tc.instance})
		if err != nil {
			t.Fatal(err)
		}
		cc, ec := c.GetCacheCapabilities(), c.GetExecutionCapabilities()
		if cc.GetActionCacheUpdateCapabilities().GetUpdateEnabled() != tc.update {
			t.Errorf("instance %q: update_enabled = %v, want %v", tc.instance, !tc.update, tc.update)
		}
		if len(cc.GetDigestFunctions()) != 1 || cc.GetDigestFunctions()[0] != repb.DigestFunction_SHA256 ||
			cc.GetMaxBatchTotalSizeBytes() != 4<<20 || cc.GetSymlinkAbsolutePathStrategy() != repb.SymlinkAbsolutePathStrategy_DISALLOWED ||
			len(cc.GetSupportedCompressors()) != 0 {
			t.Errorf("cache capabilities = %v", cc)
		}
		if ec.GetDigestFunction() != repb.DigestFunction_SHA256 || !ec.GetExecEnabled() || len(ec.GetDigestFunctions()) != 1 {
			t.Errorf("execution capabilities = %v", ec)
		}
		// Bazel 4.2.3 speaks 2.0 and must be inside the range.
		lo, hi := c.GetLowApiVersion(), c.GetHighApiVersion()
		if lo.GetMajor() != 2 || lo.GetMinor() != 0 || hi.GetMajor() != 2 || hi.GetMinor() < 1 {
			t.Errorf("API versions %v..%v; want 2.0..2.x with x >= 1", lo, hi)
		}
	}
	_, err := f.caps.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: "tenant-x"})
	wantCode(t, err, codes.InvalidArgument, `"tenant-x"`)
}
