package main

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/signer/service"
)

// newTracer opens the farm's records and returns the tracer the server uses.
func newTracer(c config, log *slog.Logger) (service.Tracer, func(), error) {
	return refusingTracer{}, func() {}, nil
}

// refusingTracer refuses every request: signing without a trace would sign
// unverified claims.
type refusingTracer struct{}

func (refusingTracer) Trace(context.Context, service.Query) (*service.Trace, error) {
	return nil, status.Error(codes.Unimplemented, "tracing the farm's records is not available in this build")
}
