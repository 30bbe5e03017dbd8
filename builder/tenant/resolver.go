package tenant

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/reapi"
)

// Owned is an instance and the tenant that owns it.
type Owned struct {
	Tenant   string
	Instance *reapi.Instance
}

// Resolver is the tenant-aware reapi.Resolver: a request may use only the
// instance names its authenticated tenant owns. The table can be swapped at
// run time.
type Resolver struct {
	table atomic.Pointer[map[string]Owned]
}

var _ reapi.Resolver = (*Resolver)(nil)

// NewResolver serves the given table (instance name → owner and storage).
func NewResolver(table map[string]Owned) *Resolver {
	r := &Resolver{}
	r.Swap(table)
	return r
}

// Swap replaces the table for requests that resolve from now on.
func (r *Resolver) Swap(table map[string]Owned) {
	cp := make(map[string]Owned, len(table))
	for k, v := range table {
		cp[k] = v
	}
	r.table.Store(&cp)
}

// Resolve implements reapi.Resolver. A caller without a tenant in ctx is
// UNAUTHENTICATED; an instance name the tenant does not own (whether another
// tenant owns it or nobody does) is PERMISSION_DENIED, with the same message
// either way.
func (r *Resolver) Resolve(ctx context.Context, name string) (*reapi.Instance, error) {
	t, ok := FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no credentials. "+unauthenticatedHelp)
	}
	table := *r.table.Load()
	if o, ok := table[name]; ok && o.Tenant == t.Name {
		return o.Instance, nil
	}
	quoted := make([]string, len(t.InstanceNames))
	for i, n := range t.InstanceNames {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	return nil, status.Errorf(codes.PermissionDenied, "tenant %q may not use instance name %q; it owns %s (pass --remote_instance_name=<one of them> to Bazel)",
		t.Name, clip(name), strings.Join(quoted, ", "))
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
