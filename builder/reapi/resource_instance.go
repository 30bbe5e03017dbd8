// Package reapi holds the gRPC servers of the Remote Execution API v2:
// Capabilities, ContentAddressableStorage, ByteStream and ActionCache (and,
// in files of its own, Execution). The servers are thin: they decode and
// validate a request, call a store, and encode the answer with a status code
// the client can act on. The caller creates them and registers them on its
// grpc.Server.
//
// Every request names an instance; the servers resolve it through a
// Resolver to the Instance that holds the storage the request may use. Today
// NewStaticResolver serves a fixed set of names; a Resolver that looks at the
// caller's credentials (from ctx) and gives each tenant its own namespace can
// replace it without touching the servers.
package reapi

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/actioncache"
	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

// Instance is what an instance name resolves to: the storage of one
// namespace and what clients may do in it.
type Instance struct {
	// Name is the instance name as clients send it ("" is the default).
	Name string
	// CAS is the namespace's content-addressable storage.
	CAS blobstore.Store
	// ActionCache holds the namespace's action results. Wrap it with
	// actioncache.NewCompleteOnly(ac, CAS) so results whose outputs were
	// evicted are not served.
	ActionCache actioncache.Cache
	// ClientActionCacheWrites lets clients call UpdateActionResult. Results
	// of actions the farm executed are cached by the farm regardless.
	ClientActionCacheWrites bool
}

// Resolver maps the instance name of a request to its Instance. It is called
// once per request, with the request's context (which carries the caller's
// credentials), so that a tenant-aware implementation can refuse callers.
// Errors should be status errors (InvalidArgument or NotFound for unknown
// names, PermissionDenied for callers that may not use the instance).
type Resolver interface {
	Resolve(ctx context.Context, instanceName string) (*Instance, error)
}

type staticResolver struct {
	byName map[string]*Instance
	names  string
}

// NewStaticResolver serves exactly the given instances to every caller.
// Names must be unique and valid instance names (no empty path segments, no
// segment that is one of the words REAPI reserves, like "blobs").
func NewStaticResolver(instances ...*Instance) (Resolver, error) {
	r := &staticResolver{byName: map[string]*Instance{}}
	var names []string
	for _, in := range instances {
		if in == nil || in.CAS == nil || in.ActionCache == nil {
			return nil, errors.New("reapi: an instance needs a CAS and an ActionCache")
		}
		if err := CheckInstanceName(in.Name); err != nil {
			return nil, err
		}
		if _, dup := r.byName[in.Name]; dup {
			return nil, fmt.Errorf("reapi: instance name %q configured twice", in.Name)
		}
		r.byName[in.Name] = in
		names = append(names, fmt.Sprintf("%q", in.Name))
	}
	if len(names) == 0 {
		return nil, errors.New("reapi: no instances to serve")
	}
	sort.Strings(names)
	r.names = strings.Join(names, ", ")
	return r, nil
}

func (r *staticResolver) Resolve(ctx context.Context, name string) (*Instance, error) {
	if in, ok := r.byName[name]; ok {
		return in, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "unknown instance name %q; this farm serves %s", clip(name), r.names)
}

// reserved are the path segments REAPI forbids in instance names, because
// resource names use them.
var reserved = map[string]bool{
	"blobs": true, "uploads": true, "actions": true, "actionResults": true,
	"operations": true, "capabilities": true, "compressed-blobs": true,
}

// CheckInstanceName reports whether name can be an instance name.
func CheckInstanceName(name string) error {
	if name == "" {
		return nil
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("instance name %q has an empty, . or .. path segment", clip(name))
		}
		if reserved[seg] {
			return fmt.Errorf("instance name %q uses the reserved word %q", clip(name), seg)
		}
	}
	return nil
}

// resolve checks the request's digest function and resolves its instance.
func resolve(ctx context.Context, r Resolver, name string, fn repb.DigestFunction_Value) (*Instance, error) {
	if err := digest.CheckFunction(fn); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return r.Resolve(ctx, name)
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
