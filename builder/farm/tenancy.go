package farm

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hallmark-build/hallmark/builder/actioncache"
	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/reapi"
	"github.com/hallmark-build/hallmark/builder/sandbox"
	"github.com/hallmark-build/hallmark/builder/scheduler"
	"github.com/hallmark-build/hallmark/builder/tenant"
)

// tenancy is the multi-tenant state of a farm: per-tenant namespaces and
// ActionCaches, the authenticator and resolver (both swapped on reload),
// and the per-tenant and per-pool counters the workers' accept functions use.
//
//	DATA/tenants/<name>/members  the tenant's CAS membership (blobstore.TenantScopes)
//	DATA/tenants/<name>/ac/      the tenant's ActionCache
type tenancy struct {
	dir      string
	scopes   *blobstore.TenantScopes
	reg      prometheus.Registerer // receives the per-instance ActionCache lookup counters
	auth     *tenant.Authenticator
	resolver *tenant.Resolver
	pools    map[tenant.Pool]int // local workers per pool; fixed for the farm's life

	// capacity is the number of slots per pool, set before the runners start.
	capacity map[tenant.Pool]int

	mu         sync.Mutex
	states     map[string]*tenantState // by tenant name
	executing  map[string]int          // by tenant name
	lastActive map[string]time.Time    // by tenant name: last task taken or finished
	free       map[tenant.Pool]*atomic.Int64
}

// reserveWindow is how long after its last activity a tenant keeps a claim
// on its fair share of its pools' free slots. Running actions are never
// preempted, so without this a tenant whose build is a chain of small steps
// waits, at every step, for one of a flooding tenant's actions to end. The
// price: while another tenant was active within the window, a flooding
// tenant runs on its fair share of the slots, not all of them.
const reserveWindow = 2 * time.Second

type tenantState struct {
	cfg *tenant.Tenant
	cas *blobstore.TenantScopedStore
	ac  *actioncache.Disk
}

func newTenancy(ctx context.Context, dataDir string, physical blobstore.Store, cfg *tenant.Config, reg prometheus.Registerer) (*tenancy, error) {
	dir := filepath.Join(dataDir, "tenants")
	scopes, err := blobstore.NewTenantScopes(physical, dir)
	if err != nil {
		return nil, err
	}
	tn := &tenancy{
		dir: dir, scopes: scopes, pools: cfg.WorkerCounts(), reg: reg,
		states: map[string]*tenantState{}, executing: map[string]int{}, free: map[tenant.Pool]*atomic.Int64{},
		lastActive: map[string]time.Time{}, capacity: map[tenant.Pool]int{},
	}
	for _, p := range tenant.AllPools {
		tn.free[p] = &atomic.Int64{}
	}
	table, err := tn.apply(ctx, cfg)
	if err != nil {
		return nil, err
	}
	tn.auth = tenant.NewAuthenticator(cfg)
	tn.resolver = tenant.NewResolver(table)
	return tn, nil
}

// apply opens the namespaces of cfg's tenants (keeping those already open)
// and returns the instance table. It changes nothing the farm serves yet.
func (tn *tenancy) apply(ctx context.Context, cfg *tenant.Config) (map[string]tenant.Owned, error) {
	for _, t := range cfg.Tenants {
		ok := false
		for _, p := range t.Ring.Pools() {
			if tn.pools[p] > 0 {
				ok = true
			}
		}
		if !ok {
			return nil, fmt.Errorf("tenant %q (ring %s) needs a %s worker, and this farm started without one (worker pools never change while the farm runs; restart it)", t.Name, t.Ring, t.Ring.Pools()[0])
		}
	}
	states := map[string]*tenantState{}
	table := map[string]tenant.Owned{}
	for _, t := range cfg.Tenants {
		cas, err := tn.scopes.Open(ctx, t.Name, t.Quotas.CASBytes)
		if err != nil {
			return nil, err
		}
		tn.mu.Lock()
		old := tn.states[t.Name]
		tn.mu.Unlock()
		st := &tenantState{cfg: t, cas: cas}
		if old != nil {
			st.ac = old.ac
		} else if st.ac, err = actioncache.NewDisk(filepath.Join(tn.dir, t.Name, "ac"), actioncache.WithoutFsyncUnsafe()); err != nil { // not synced: see farm.New
			return nil, fmt.Errorf("tenant %q: %w", t.Name, err)
		}
		states[t.Name] = st
		ac, err := actioncache.NewMetricsCache(actioncache.NewCompleteOnly(st.ac, cas), tn.reg)
		if err != nil {
			return nil, err
		}
		for _, name := range t.InstanceNames {
			table[name] = tenant.Owned{Tenant: t.Name, Instance: &reapi.Instance{
				Name:                    name,
				CAS:                     cas,
				ActionCache:             ac,
				ClientActionCacheWrites: t.ActionCacheWrites,
			}}
		}
	}
	tn.mu.Lock()
	tn.states = states
	tn.mu.Unlock()
	return table, nil
}

// reload swaps in a new configuration; a bad one changes nothing.
func (tn *tenancy) reload(ctx context.Context, cfg *tenant.Config) error {
	table, err := tn.apply(ctx, cfg)
	if err != nil {
		return err
	}
	tn.resolver.Swap(table)
	tn.auth.Swap(cfg)
	return nil
}

func (tn *tenancy) state(name string) *tenantState {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.states[name]
}

func (tn *tenancy) inFlight(sched *scheduler.Scheduler) func(string) int {
	return func(name string) int {
		tn.mu.Lock()
		n := tn.executing[name]
		tn.mu.Unlock()
		return n + sched.TenantQueued(name)
	}
}

// accept returns the scheduler.Accept of a worker slot in pool; bound, for
// foundational workers, is the one tenant the worker serves. It runs under
// the scheduler's lock; when it accepts, the task is taken, so it counts the
// task as executing for its tenant (done releases it).
func (tn *tenancy) accept(pool tenant.Pool, bound string) scheduler.Accept {
	return func(t *scheduler.Task) bool {
		pools := tenant.TaskPools(t)
		idx := -1
		for i, p := range pools {
			if p == pool {
				idx = i
			}
		}
		if idx < 0 || (pool == tenant.FoundationalPool && t.Tenant != bound) {
			return false
		}
		// A less preferred pool takes the task only when every preferred
		// pool that has workers is busy.
		for _, p := range pools[:idx] {
			if tn.pools[p] > 0 && tn.free[p].Load() > 0 {
				return false
			}
		}
		tn.mu.Lock()
		defer tn.mu.Unlock()
		st := tn.states[t.Tenant]
		if st == nil {
			return false // a tenant removed by a reload: its queued work waits for cancellation
		}
		if q := st.cfg.Quotas.ConcurrentActions; q > 0 && tn.executing[t.Tenant] >= q {
			return false
		}
		now := time.Now()
		if tn.free[pool].Load() <= int64(tn.reservedLocked(pool, t.Tenant, now)) {
			return false
		}
		tn.executing[t.Tenant]++
		tn.lastActive[t.Tenant] = now
		return true
	}
}

// reservedLocked returns how many free slots of pool are kept for tenants
// other than taker. Every tenant that may run on pool and was active within
// reserveWindow (or has actions running) has a fair share of the pool's
// slots; a tenant below its share that was active recently keeps the
// difference free. A pool of one slot is never reserved.
func (tn *tenancy) reservedLocked(pool tenant.Pool, taker string, now time.Time) int {
	capacity := tn.capacity[pool]
	if capacity < 2 {
		return 0
	}
	var claimants []string
	active := 1 // the taker
	for name, st := range tn.states {
		if name == taker || !canUse(st.cfg.Ring, pool) {
			continue
		}
		recent := now.Sub(tn.lastActive[name]) <= reserveWindow
		if recent || tn.executing[name] > 0 {
			active++
		}
		if recent {
			claimants = append(claimants, name)
		}
	}
	share := capacity / active
	if share < 1 {
		share = 1
	}
	reserved := 0
	for _, name := range claimants {
		if n := tn.executing[name]; n < share {
			reserved += share - n
		}
	}
	return reserved
}

func canUse(r tenant.Ring, pool tenant.Pool) bool {
	for _, p := range r.Pools() {
		if p == pool {
			return true
		}
	}
	return false
}

func (tn *tenancy) done(t *scheduler.Task) {
	tn.mu.Lock()
	tn.executing[t.Tenant]--
	tn.lastActive[t.Tenant] = time.Now()
	tn.mu.Unlock()
}

// foundationalBinding assigns each foundational worker to one foundational
// tenant, in configuration order, round-robin.
func foundationalBinding(cfg *tenant.Config, n int) []string {
	var names []string
	for _, t := range cfg.Tenants {
		if t.Ring == tenant.Foundational {
			names = append(names, t.Name)
		}
	}
	out := make([]string, n)
	for i := range out {
		if len(names) > 0 {
			out[i] = names[i%len(names)]
		}
	}
	return out
}

func sortedPools(m map[tenant.Pool]int) []tenant.Pool {
	var ps []tenant.Pool
	for p := range m {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

type sandboxKey struct{}

// tierRunner dispatches each run to the tenant's sandbox tier, which the
// executor puts in the context.
type tierRunner struct {
	namespaces sandbox.Runner
	gvisor     sandbox.Runner
}

func (r tierRunner) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	if k, _ := ctx.Value(sandboxKey{}).(tenant.Sandbox); k == tenant.GVisor {
		if r.gvisor == nil {
			return sandbox.Result{}, fmt.Errorf("the tenant's sandbox is gvisor, but runsc is not available on this worker")
		}
		return r.gvisor.Run(ctx, spec)
	}
	return r.namespaces.Run(ctx, spec)
}

// tenantExecutor runs a task on a pool worker under the tenant's sandbox
// tier, enforces max_output_bytes and adds the outputs to the tenant's CAS
// namespace.
type tenantExecutor struct {
	exec     Executor
	tn       *tenancy
	physical blobstore.Store
}

func (e tenantExecutor) Execute(ctx context.Context, t *scheduler.Task) (*repb.ActionResult, bool, error) {
	st := e.tn.state(t.Tenant)
	if st == nil {
		return nil, false, fmt.Errorf("tenant %q is no longer configured", t.Tenant)
	}
	// The gVisor tier keeps a warm sandbox per tenant (and worker slot).
	sctx := sandbox.WithReuseKey(context.WithValue(ctx, sandboxKey{}, st.cfg.Sandbox), t.Tenant)
	res, timedOut, err := e.exec.Execute(sctx, t)
	if err != nil {
		return nil, false, err
	}
	refs, err := actioncache.Referenced(ctx, e.physical, res)
	if err != nil {
		return nil, false, fmt.Errorf("listing the outputs: %w", err)
	}
	var total int64
	for _, d := range refs {
		total += d.Size
	}
	if max := st.cfg.Quotas.MaxOutputBytes; max > 0 && total > max {
		return nil, false, blobstore.QuotaExceeded(t.Tenant, "max_output_bytes",
			fmt.Sprintf("the action's outputs total %d bytes, above the limit of %d", total, max))
	}
	if err := st.cas.Adopt(ctx, refs); err != nil {
		return nil, false, err
	}
	return res, timedOut, nil
}

// tenantResults caches executed results in the tenant's own ActionCache.
type tenantResults struct{ tn *tenancy }

func (r tenantResults) Put(ctx context.Context, t *scheduler.Task, action digest.Digest, res *repb.ActionResult) error {
	st := r.tn.state(t.Tenant)
	if st == nil {
		return fmt.Errorf("tenant %q is no longer configured", t.Tenant)
	}
	return st.ac.Put(ctx, t.Instance, action, res)
}
