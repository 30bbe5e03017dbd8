package farm

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/hallmark-build/hallmark/builder/sandbox"
	"github.com/hallmark-build/hallmark/builder/tenant"
	"github.com/hallmark-build/hallmark/builder/worker"
)

// poolWorker is one local worker of a multi-tenant farm. Its pool (and, for
// a foundational worker, its one tenant) is fixed when the farm starts.
type poolWorker struct {
	pool   tenant.Pool
	bound  string // foundational workers: the one tenant served
	id     string
	slots  int
	worker *worker.Worker
}

// newPools creates the workers of every pool cfg.Tenants needs: each its
// own directory, host uids and slots; they share the physical CAS.
func (f *Farm) newPools(cfg Config, namespaces sandbox.Runner, host string) error {
	counts := cfg.Tenants.WorkerCounts()
	total := 0
	for _, n := range counts {
		total += n
	}
	if total == 0 {
		return fmt.Errorf("the tenant configuration needs no workers")
	}
	slots := cfg.Workers / total
	if slots < 1 {
		slots = 1
	}
	tiers := tierRunner{namespaces: namespaces, gvisor: cfg.GVisor}
	needGVisor := false
	for _, t := range cfg.Tenants.Tenants {
		needGVisor = needGVisor || t.Sandbox == tenant.GVisor
	}
	if tiers.gvisor == nil && needGVisor {
		var opts []sandbox.GVisorOption
		if cfg.RunscPath != "" {
			opts = append(opts, sandbox.WithRunscPath(cfg.RunscPath))
		}
		opts = append(opts, sandbox.WithGVisorStateDir(filepath.Join(cfg.DataDir, "gvisor")))
		g, err := sandbox.NewGVisor(opts...)
		if err != nil {
			return fmt.Errorf("a tenant uses sandbox: gvisor: %w", err)
		}
		tiers.gvisor = g
	}
	f.tiers = tiers
	uid := cfg.UIDBase
	for _, pool := range sortedPools(counts) {
		n := counts[pool]
		var bound []string
		if pool == tenant.FoundationalPool {
			bound = foundationalBinding(cfg.Tenants, n)
		}
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s/%s-%d", host, pool, i)
			w, err := worker.New(filepath.Join(cfg.DataDir, "worker", fmt.Sprintf("%s-%d", pool, i)), f.cas, tiers,
				worker.WithID(id), worker.WithSlots(slots), worker.WithUIDBase(uid),
				worker.WithTimeouts(cfg.DefaultActionTimeout, cfg.MaxActionTimeout))
			if err != nil {
				return err
			}
			uid += slots
			pw := poolWorker{pool: pool, id: id, slots: slots, worker: w}
			if bound != nil {
				pw.bound = bound[i]
			}
			f.pools = append(f.pools, pw)
		}
	}
	return nil
}

func (f *Farm) startPoolRunners(ctx context.Context) {
	for _, pw := range f.pools {
		f.tenancy.capacity[pw.pool] += pw.slots
	}
	for _, pw := range f.pools {
		f.log.Info("worker", "id", pw.id, "pool", string(pw.pool), "slots", pw.slots, "tenant", pw.bound)
		for i := 0; i < pw.slots; i++ {
			var exec Executor = workerExecutor{pw.worker}
			if f.signing != nil {
				exec = signingExecutor{base: exec, handler: f.signing}
			}
			r := &runner{
				id: fmt.Sprintf("%s/slot-%d", pw.id, i), sched: f.sched,
				exec: tenantExecutor{exec: exec, tn: f.tenancy, physical: f.cas},
				log:  f.execlog, results: f.ac, logger: f.log, metrics: f.metrics,
				accept: f.tenancy.accept(pw.pool, pw.bound), idle: f.tenancy.free[pw.pool],
				done: f.tenancy.done, taskResults: tenantResults{f.tenancy},
			}
			f.runners.Add(1)
			go func() { defer f.runners.Done(); r.loop(ctx) }()
		}
	}
}

// Reload swaps in a new tenant configuration without stopping running or
// queued actions: credentials, instance names, quotas and sandbox tiers
// apply to requests from now on. Worker pools never change; a configuration
// that needs a pool the farm has no worker for is refused, and so is one
// for a farm started without tenants. On error nothing changed.
func (f *Farm) Reload(cfg *tenant.Config) error {
	if f.tenancy == nil {
		return fmt.Errorf("farm: this farm was started without a tenant configuration; restart it with one")
	}
	for _, t := range cfg.Tenants {
		if t.Sandbox == tenant.GVisor {
			if f.tiers.gvisor == nil {
				return fmt.Errorf("farm: tenant %q uses sandbox: gvisor, and this farm started without runsc; restart it", t.Name)
			}
		}
		if t.Ring == tenant.Foundational {
			bound := false
			for _, pw := range f.pools {
				bound = bound || pw.bound == t.Name
			}
			if !bound {
				return fmt.Errorf("farm: foundational tenant %q has no worker of its own (foundational workers are assigned at start); restart the farm", t.Name)
			}
		}
	}
	if err := f.tenancy.reload(context.Background(), cfg); err != nil {
		return fmt.Errorf("farm: %w", err)
	}
	return nil
}
