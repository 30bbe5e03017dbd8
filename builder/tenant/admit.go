package tenant

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hallmark-build/hallmark/builder/reapi"
	"github.com/hallmark-build/hallmark/builder/scheduler"
)

// The platform properties the farm understands. Anything else is refused,
// so that a typo does not silently run an action somewhere unintended.
const (
	// PropertyPool picks one of the pools the tenant's ring may use.
	PropertyPool = "pool"
	// PropertySign marks an action the farm hands to the signer (see rules/).
	PropertySign = "hallmark-sign"
	// PropertyOSFamily is accepted when it says "linux" (any case).
	PropertyOSFamily = "OSFamily"
)

var knownProperties = []string{PropertyOSFamily, PropertySign, PropertyPool}

// QuotaError returns RESOURCE_EXHAUSTED with a QuotaFailure detail whose
// subject is "tenant:<name>" and whose description starts with the quota's
// name (cas_bytes, concurrent_actions, max_action_timeout, max_output_bytes).
func QuotaError(tenantName, quota, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	st := status.Newf(codes.ResourceExhausted, "tenant %q is at its %s quota: %s", tenantName, quota, msg)
	if d, err := st.WithDetails(&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
		Subject: "tenant:" + tenantName, Description: quota + ": " + msg,
	}}}); err == nil {
		st = d
	}
	return st.Err()
}

// Admission is the farm's reapi.TaskAdmitter for tenants: it stamps each
// task with its tenant and pools, checks platform properties and the
// timeout and queue quotas.
type Admission struct {
	// DefaultTimeout is the timeout of actions that ask for none.
	DefaultTimeout time.Duration
	// InFlight returns how many actions of a tenant are queued or executing.
	InFlight func(tenant string) int
}

// Admit implements reapi.TaskAdmitter.
func (a *Admission) Admit(ctx context.Context, t *scheduler.Task) error {
	ten, ok := FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no credentials. "+unauthenticatedHelp)
	}
	t.Tenant = ten.Name
	platform := t.Action.GetPlatform()
	if len(platform.GetProperties()) == 0 {
		platform = t.Command.GetPlatform()
	}
	pools := ten.Ring.Pools()
	for _, p := range platform.GetProperties() {
		switch p.GetName() {
		case PropertySign:
		case PropertyOSFamily:
			if !strings.EqualFold(p.GetValue(), "linux") {
				return status.Errorf(codes.InvalidArgument, "platform property OSFamily=%q: this farm runs only linux actions", clip(p.GetValue()))
			}
		case PropertyPool:
			allowed := false
			for _, pool := range pools {
				if string(pool) == p.GetValue() {
					allowed = true
				}
			}
			if !allowed {
				return status.Errorf(codes.InvalidArgument, "platform property pool=%q: tenant %q (ring %s) may run only on pool %s",
					clip(p.GetValue()), ten.Name, ten.Ring, joinPools(pools))
			}
			pools = []Pool{Pool(p.GetValue())}
		default:
			known := append([]string(nil), knownProperties...)
			sort.Strings(known)
			return status.Errorf(codes.InvalidArgument, "platform property %q is not supported by this farm (supported: %s); remove it from the target's exec_properties or the execution platform",
				clip(p.GetName()), strings.Join(known, ", "))
		}
	}
	t.Pool = joinPools(pools)

	q := ten.Quotas
	if to := t.Action.GetTimeout(); to != nil {
		if to.AsDuration() > q.MaxActionTimeout {
			return QuotaError(ten.Name, "max_action_timeout", "the action asks for a timeout of %v, above the tenant's limit of %v", to.AsDuration(), q.MaxActionTimeout)
		}
	} else if a.DefaultTimeout > q.MaxActionTimeout {
		act := proto.Clone(t.Action).(*repb.Action)
		act.Timeout = durationpb.New(q.MaxActionTimeout)
		t.Action = act
	}
	if a.InFlight != nil && q.ConcurrentActions > 0 {
		if n := a.InFlight(ten.Name); n >= QueueFactor*q.ConcurrentActions {
			return QuotaError(ten.Name, "concurrent_actions", "%d actions are queued or executing (at most %d×%d); retry when some finished", n, QueueFactor, q.ConcurrentActions)
		}
	}
	return nil
}

var _ reapi.TaskAdmitter = (&Admission{}).Admit

// TaskPools returns the pools a task admitted by Admission may run on,
// preferred first.
func TaskPools(t *scheduler.Task) []Pool {
	if t.Pool == "" {
		return nil
	}
	var out []Pool
	for _, p := range strings.Split(t.Pool, ",") {
		out = append(out, Pool(p))
	}
	return out
}

func joinPools(ps []Pool) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ",")
}
