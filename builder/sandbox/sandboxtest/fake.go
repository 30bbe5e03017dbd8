// Package sandboxtest holds a fake sandbox.Runner for tests of the worker and
// the scheduler that do not need real isolation.
package sandboxtest

import (
	"context"
	"sync"

	"github.com/hallmark-build/hallmark/builder/sandbox"
)

// Fake is a sandbox.Runner that records each Spec it is given and runs Script
// instead of a command. It is safe for concurrent use.
type Fake struct {
	// Script, if set, stands in for the command: it may write outputs under
	// spec.InputRoot (it runs as the test process, without isolation), and
	// its return values are Run's. Unset, Run returns a zero Result.
	Script func(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error)

	mu    sync.Mutex
	specs []sandbox.Spec
}

var _ sandbox.Runner = (*Fake)(nil)

// Run validates spec, records it, honours ctx and calls Script.
func (f *Fake) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	if err := spec.Validate(); err != nil {
		return sandbox.Result{}, err
	}
	f.mu.Lock()
	f.specs = append(f.specs, spec)
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return sandbox.Result{Killed: sandbox.Cancelled}, err
	}
	if f.Script == nil {
		return sandbox.Result{}, nil
	}
	return f.Script(ctx, spec)
}

// Specs returns the Specs Run was called with, in order.
func (f *Fake) Specs() []sandbox.Spec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sandbox.Spec(nil), f.specs...)
}
