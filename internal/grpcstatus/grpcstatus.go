// Package grpcstatus turns the farm's errors into gRPC status errors without
// losing their codes, and builds the few detailed statuses REAPI asks for.
package grpcstatus

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/actioncache"
	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

// Wrapf adds context in front of err's message and keeps err's gRPC code and
// details. An error without a status gets the code FromError would give it.
// Wrapf(nil, ...) is nil.
func Wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	p := status.Convert(FromError(err)).Proto()
	p.Message = fmt.Sprintf(format, args...) + ": " + p.GetMessage()
	return status.ErrorProto(p)
}

// Code returns err's gRPC code as FromError would classify it.
func Code(err error) codes.Code {
	return status.Code(FromError(err))
}

// FromError returns err as a status error. Status errors (also wrapped ones)
// keep their code; everything else is classified like FromStoreError does, and
// what cannot be classified becomes Internal.
func FromError(err error) error {
	if err == nil {
		return nil
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		s := se.GRPCStatus()
		if s.Message() == err.Error() {
			return s.Err()
		}
		// Keep code and details but report the full, wrapped message.
		p := s.Proto()
		p.Message = err.Error()
		return status.ErrorProto(p)
	}
	return status.Error(classify(err), err.Error())
}

// FromStoreError maps the errors of the blob store and the action cache to
// gRPC codes:
//
//	blobstore.ErrNotFound, actioncache.ErrNotFound  NOT_FOUND
//	blobstore.ErrDigestMismatch, digest.ErrInvalid  INVALID_ARGUMENT
//	actioncache.ErrInvalid                         INVALID_ARGUMENT
//	blobstore.ErrTooLarge                          INVALID_ARGUMENT (the blob can never be stored)
//	blobstore.ErrFull, ENOSPC, EDQUOT              RESOURCE_EXHAUSTED (retry later)
//	blobstore.ErrOutOfRange                        OUT_OF_RANGE
//	context.Canceled, context.DeadlineExceeded     CANCELLED, DEADLINE_EXCEEDED
//	anything else                                  INTERNAL
//
// Errors that already carry a status keep it.
func FromStoreError(err error) error {
	return FromError(err)
}

var table = []struct {
	err  error
	code codes.Code
}{
	{blobstore.ErrNotFound, codes.NotFound},
	{actioncache.ErrNotFound, codes.NotFound},
	{blobstore.ErrDigestMismatch, codes.InvalidArgument},
	{digest.ErrInvalid, codes.InvalidArgument},
	{actioncache.ErrInvalid, codes.InvalidArgument},
	{blobstore.ErrTooLarge, codes.InvalidArgument},
	{blobstore.ErrFull, codes.ResourceExhausted},
	{syscall.ENOSPC, codes.ResourceExhausted},
	{syscall.EDQUOT, codes.ResourceExhausted},
	{blobstore.ErrOutOfRange, codes.OutOfRange},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

func classify(err error) codes.Code {
	for _, r := range table {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	return codes.Internal
}

// MissingBlobs returns FAILED_PRECONDITION with a PreconditionFailure detail
// that lists each blob of ds as a violation of type "MISSING" with subject
// "blobs/<hash>/<size>", as remote_execution.proto specifies for Execute, so a
// client re-uploads exactly those blobs and retries.
func MissingBlobs(ds []digest.Digest) error {
	msg := fmt.Sprintf("%d blob(s) missing from the CAS", len(ds))
	if len(ds) > 0 {
		msg += ", first " + ds[0].String()
	}
	pf := &errdetails.PreconditionFailure{}
	for _, d := range ds {
		pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
			Type:        "MISSING",
			Subject:     "blobs/" + d.String(),
			Description: "blob " + d.String() + " is not in the CAS",
		})
	}
	s, err := status.New(codes.FailedPrecondition, msg).WithDetails(pf)
	if err != nil {
		return status.Error(codes.FailedPrecondition, msg)
	}
	return s.Err()
}
