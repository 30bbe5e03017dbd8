package blobstore

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// QuotaExceeded returns RESOURCE_EXHAUSTED with a QuotaFailure detail whose
// subject is "tenant:<name>" and whose description starts with the quota's
// name, so that clients and operators see which quota a tenant hit. The
// tenant-scoped store returns it for cas_bytes; the farm for the others.
func QuotaExceeded(tenant, quota, msg string) error {
	st := status.Newf(codes.ResourceExhausted, "tenant %q is at its %s quota: %s", tenant, quota, msg)
	if d, err := st.WithDetails(&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
		Subject: "tenant:" + tenant, Description: quota + ": " + msg,
	}}}); err == nil {
		st = d
	}
	return st.Err()
}
