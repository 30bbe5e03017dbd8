package grpcstatus_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/actioncache"
	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/internal/grpcstatus"
)

func TestFromStoreError(t *testing.T) {
	d := digest.OfBytes([]byte("x"))
	_, invalid := digest.Parse("nonsense")
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"NotFound", &blobstore.NotFoundError{Digest: d}, codes.NotFound},
		{"ACNotFound", &actioncache.NotFoundError{Action: d}, codes.NotFound},
		{"Mismatch", fmt.Errorf("put: %w", blobstore.ErrDigestMismatch), codes.InvalidArgument},
		{"InvalidDigest", invalid, codes.InvalidArgument},
		{"TooLarge", blobstore.ErrTooLarge, codes.InvalidArgument},
		{"Full", blobstore.ErrFull, codes.ResourceExhausted},
		{"OutOfRange", blobstore.ErrOutOfRange, codes.OutOfRange},
		{"Canceled", fmt.Errorf("x: %w", context.Canceled), codes.Canceled},
		{"Deadline", context.DeadlineExceeded, codes.DeadlineExceeded},
		{"Other", errors.New("disk on fire"), codes.Internal},
		{"DiskFull", &os.PathError{Op: "write", Path: "/cas/tmp/x", Err: syscall.ENOSPC}, codes.ResourceExhausted},
		{"Status", status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied},
		{"WrappedStatus", fmt.Errorf("ctx: %w", status.Error(codes.Unavailable, "down")), codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := grpcstatus.FromStoreError(tc.err)
			if status.Code(got) != tc.want {
				t.Fatalf("code %v, want %v (%v)", status.Code(got), tc.want, got)
			}
			if !strings.Contains(status.Convert(got).Message(), status.Convert(tc.err).Message()) {
				t.Fatalf("message %q lost %q", status.Convert(got).Message(), tc.err)
			}
		})
	}
	if grpcstatus.FromStoreError(nil) != nil {
		t.Fatal("FromStoreError(nil) != nil")
	}
}

func TestWrapf(t *testing.T) {
	base := grpcstatus.MissingBlobs([]digest.Digest{digest.OfBytes([]byte("a"))})
	err := grpcstatus.Wrapf(base, "action %s", "abc")
	s := status.Convert(err)
	if s.Code() != codes.FailedPrecondition || !strings.HasPrefix(s.Message(), "action abc: ") || len(s.Details()) != 1 {
		t.Fatalf("Wrapf = %v (details %v); want code, prefix and detail kept", s, s.Details())
	}
	if c := status.Code(grpcstatus.Wrapf(blobstore.ErrTooLarge, "blob")); c != codes.InvalidArgument {
		t.Fatalf("Wrapf of store error has code %v", c)
	}
	if grpcstatus.Wrapf(nil, "x") != nil {
		t.Fatal("Wrapf(nil) != nil")
	}
}

func TestMissingBlobs(t *testing.T) {
	a, b := digest.OfBytes([]byte("a")), digest.OfBytes([]byte("bb"))
	s := status.Convert(grpcstatus.MissingBlobs([]digest.Digest{a, b}))
	if s.Code() != codes.FailedPrecondition {
		t.Fatalf("code %v", s.Code())
	}
	if len(s.Details()) != 1 {
		t.Fatalf("details %v", s.Details())
	}
	pf, ok := s.Details()[0].(*errdetails.PreconditionFailure)
	if !ok || len(pf.Violations) != 2 {
		t.Fatalf("detail %v is not a PreconditionFailure with 2 violations", s.Details()[0])
	}
	for i, d := range []digest.Digest{a, b} {
		v := pf.Violations[i]
		if v.Type != "MISSING" || v.Subject != "blobs/"+d.Hash+"/"+fmt.Sprint(d.Size) {
			t.Errorf("violation %d = %v", i, v)
		}
	}
}
