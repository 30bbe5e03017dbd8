package farm

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/hallmark-build/hallmark/builder/scheduler"
	"github.com/hallmark-build/hallmark/builder/signing"
)

// signingExecutor hands actions whose platform carries the hallmark-sign
// property to the signing handler (which asks the signer for a manifest and
// runs no command), and every other action to base. The runner logs and
// caches both kinds alike.
type signingExecutor struct {
	base    Executor
	handler *signing.Handler
}

func (e signingExecutor) Execute(ctx context.Context, t *scheduler.Task) (*repb.ActionResult, bool, error) {
	if !signing.Requested(t.Action, t.Command) {
		return e.base.Execute(ctx, t)
	}
	res, err := e.handler.Execute(ctx, t)
	return res, false, err
}

// newSigning returns the signing handler for cfg, or nil when no signer is
// configured (then signing actions run like any other and fail with the
// message their command prints).
func newSigning(cfg Config, f *Farm) (*signing.Handler, error) {
	if cfg.Signer == "" {
		return nil, nil
	}
	c, err := signing.NewClient(cfg.Signer)
	if err != nil {
		return nil, err
	}
	tenant := cfg.SignerUntenanted
	if tenant == "" {
		tenant = "default"
	}
	return signing.NewHandler(c, f.cas, tenant)
}
