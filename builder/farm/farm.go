// Package farm assembles a whole builder on one machine: the disk CAS and
// ActionCache, the execution log, the scheduler, in-process workers running
// sandboxed actions, the REAPI gRPC services, metrics and progress logs.
//
// The data directory holds everything that must survive a restart:
//
//	DATA/cas/       the CAS (see blobstore.NewDisk)
//	DATA/ac/        the ActionCache (see actioncache.NewDisk)
//	DATA/log/       the execution log (see docs/execlog.md)
//	DATA/uploads/   partial ByteStream uploads (removed on restart)
//	DATA/worker/    per-action directories and the worker's file cache
package farm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"

	"github.com/hallmark-build/hallmark/builder/actioncache"
	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/execlog"
	"github.com/hallmark-build/hallmark/builder/reapi"
	"github.com/hallmark-build/hallmark/builder/sandbox"
	"github.com/hallmark-build/hallmark/builder/scheduler"
	"github.com/hallmark-build/hallmark/builder/signing"
	"github.com/hallmark-build/hallmark/builder/tenant"
	"github.com/hallmark-build/hallmark/builder/worker"
)

// Config is the whole configuration of a one-machine farm. Zero values take
// the defaults documented per field.
type Config struct {
	// DataDir holds the CAS, ActionCache, execution log and worker files.
	DataDir string
	// Workers is how many actions run at once. Default: the number of CPUs.
	Workers int
	// MaxCASBytes bounds the CAS on disk; least recently used blobs that no
	// queued or executing action needs are evicted. Default 0: no bound.
	MaxCASBytes int64
	// ClientActionCacheWrites lets clients write the ActionCache, so that
	// `--remote_cache` alone (local execution) works. Results of actions the
	// farm executed are always cached by the farm.
	ClientActionCacheWrites bool
	// DefaultActionTimeout applies to actions that set none (default 15m);
	// MaxActionTimeout caps what an action may ask for (default 1h).
	DefaultActionTimeout, MaxActionTimeout time.Duration
	// Sandbox is the runner the workers use. Default: bubblewrap.
	Sandbox sandbox.Runner
	// UIDBase is the first host uid the sandboxes run as (one per worker
	// slot). Default 61000.
	UIDBase int
	// ProgressInterval is how often a progress line is logged while the farm
	// is busy. Default 5s.
	ProgressInterval time.Duration
	// Logger receives structured logs. Default: slog.Default().
	Logger *slog.Logger
	// Registry receives the farm's Prometheus metrics. Default: a new one.
	Registry *prometheus.Registry
	// Signer is the signer's address (unix:PATH or tcp:127.0.0.1:PORT) for
	// actions with the hallmark-sign platform property. Default "": no
	// signer, such actions run their command (which fails saying so).
	Signer string
	// SignerUntenanted is the tenant named in signing requests for actions
	// that carry no tenant. Default "default".
	SignerUntenanted string
	// Tenants, when set, makes the farm multi-tenant (docs/tenancy.md):
	// every RPC is authenticated, each tenant has its own CAS namespace and
	// ActionCache, and actions run on the worker pools of the tenants'
	// rings. MaxCASBytes and ClientActionCacheWrites are then per tenant
	// (quotas.cas_bytes, action_cache_writes). Workers is the number of
	// slots shared among the pools' workers (at least one slot each).
	Tenants *tenant.Config
	// GVisor runs the actions of tenants with sandbox: gvisor. Default:
	// sandbox.NewGVisor with RunscPath.
	GVisor sandbox.Runner
	// RunscPath is the runsc binary for the default GVisor runner
	// (default: runsc in PATH).
	RunscPath string
	// ServerOptions are added to the gRPC server's (for example TLS
	// credentials).
	ServerOptions []grpc.ServerOption
}

// Farm is a running builder. Create it with New, then Serve.
type Farm struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	cas     *blobstore.Disk
	ac      *actioncache.Disk
	execlog *execlog.Log
	sched   *scheduler.Scheduler
	worker  *worker.Worker
	pools   []poolWorker // multi-tenant farms: one entry per worker
	tenancy *tenancy
	tiers   tierRunner
	grpc    *grpc.Server
	metrics *metrics
	signing *signing.Handler

	runners   sync.WaitGroup
	stopRun   context.CancelFunc
	completed func() uint64
}

// New opens (or creates) the data directory and assembles the farm. Nothing
// listens yet.
func New(cfg Config) (*Farm, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("farm: a data directory is required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.DefaultActionTimeout <= 0 {
		cfg.DefaultActionTimeout = 15 * time.Minute
	}
	if cfg.MaxActionTimeout <= 0 {
		cfg.MaxActionTimeout = time.Hour
	}
	if cfg.MaxActionTimeout < cfg.DefaultActionTimeout {
		return nil, fmt.Errorf("farm: max action timeout %v is below the default timeout %v", cfg.MaxActionTimeout, cfg.DefaultActionTimeout)
	}
	if cfg.UIDBase == 0 {
		cfg.UIDBase = 61000
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
		cfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	f := &Farm{cfg: cfg, log: cfg.Logger, reg: cfg.Registry}
	if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
		return nil, fmt.Errorf("farm: %w", err)
	}
	// The data directory must stay out of reach of the sandboxed uids.
	if err := os.Chmod(cfg.DataDir, 0o711); err != nil {
		return nil, fmt.Errorf("farm: %w", err)
	}
	var err error
	defer func() {
		if err != nil {
			f.closeStores()
		}
	}()
	// One syncfs a second instead of two fsyncs per blob: a killed server
	// loses nothing, and after a power loss the blobs of the last second are
	// re-hashed on open and dropped if torn (see blobstore.WithPeriodicSync).
	casOpts := []blobstore.DiskOption{blobstore.WithPeriodicSync(time.Second)}
	if cfg.MaxCASBytes > 0 && cfg.Tenants == nil {
		casOpts = append(casOpts, blobstore.WithMaxBytes(cfg.MaxCASBytes))
	}
	if f.cas, err = blobstore.NewDisk(filepath.Join(cfg.DataDir, "cas"), casOpts...); err != nil {
		f.cas = nil
		return nil, fmt.Errorf("farm: opening the CAS: %w", err)
	}
	// The ActionCache is a cache, not a record: entries are renamed into
	// place atomically (a killed server loses none), and one lost to a power
	// loss only means an action runs again. Not syncing saves ~2 ms on every
	// executed action. The execution log, which is a record, stays synced.
	if f.ac, err = actioncache.NewDisk(filepath.Join(cfg.DataDir, "ac"), actioncache.WithoutFsyncUnsafe()); err != nil {
		return nil, fmt.Errorf("farm: opening the ActionCache: %w", err)
	}
	if f.execlog, err = execlog.Open(filepath.Join(cfg.DataDir, "log")); err != nil {
		f.execlog = nil
		return nil, fmt.Errorf("farm: opening the execution log: %w", err)
	}
	seq, _ := f.execlog.Head()
	f.log.Info("execution log open", "records", seq, "path", f.execlog.Path())

	runner := cfg.Sandbox
	if runner == nil {
		if err = checkTraversable(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("farm: %w", err)
		}
		var b *sandbox.Bwrap
		if b, err = sandbox.NewBwrap(); err != nil {
			return nil, fmt.Errorf("farm: %w (install bubblewrap: apt-get install bubblewrap)", err)
		}
		runner = b
	}
	host, _ := os.Hostname()
	if cfg.Tenants != nil {
		if err = f.newPools(cfg, runner, host); err != nil {
			return nil, fmt.Errorf("farm: %w", err)
		}
	} else if f.worker, err = worker.New(filepath.Join(cfg.DataDir, "worker"), f.cas, runner,
		worker.WithID(host+"/worker"), worker.WithSlots(cfg.Workers), worker.WithUIDBase(cfg.UIDBase),
		worker.WithTimeouts(cfg.DefaultActionTimeout, cfg.MaxActionTimeout)); err != nil {
		return nil, fmt.Errorf("farm: %w", err)
	}

	if f.signing, err = newSigning(cfg, f); err != nil {
		return nil, fmt.Errorf("farm: %w", err)
	}
	f.metrics = newMetrics(f.reg)
	var casView blobstore.Store
	if casView, err = blobstore.NewMetricsStore(f.cas, f.reg); err != nil {
		return nil, fmt.Errorf("farm: %w", err)
	}
	f.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "hallmark", Subsystem: "cas", Name: "stored_bytes", Help: "Bytes of blobs stored in the CAS."},
		func() float64 { return float64(f.cas.Used()) }))
	// With tenants, slot reservation (tenancy.reservedLocked) depends on
	// time: let waiting workers look at the queue again now and then.
	var schedOpts scheduler.Options
	if cfg.Tenants != nil {
		schedOpts.Recheck = 250 * time.Millisecond
	}
	f.sched = scheduler.New(schedOpts)
	f.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "hallmark", Subsystem: "execution", Name: "queued_actions", Help: "Actions waiting for a worker."},
		func() float64 { return float64(f.sched.Stats().Queued) }))

	var ac actioncache.Cache
	if ac, err = actioncache.NewMetricsCache(actioncache.NewCompleteOnly(f.ac, f.cas), f.reg); err != nil {
		return nil, fmt.Errorf("farm: %w", err)
	}
	inst := &reapi.Instance{
		Name:                    "",
		CAS:                     casView,
		ActionCache:             ac,
		ClientActionCacheWrites: cfg.ClientActionCacheWrites,
	}
	var resolver reapi.Resolver
	var admit reapi.TaskAdmitter = func(context.Context, *scheduler.Task) error { return nil }
	serverOpts := []grpc.ServerOption{grpc.MaxRecvMsgSize(16 << 20), grpc.MaxSendMsgSize(16 << 20)}
	serverOpts = append(serverOpts, cfg.ServerOptions...)
	if cfg.Tenants != nil {
		if f.tenancy, err = newTenancy(context.Background(), cfg.DataDir, f.cas, cfg.Tenants, f.reg); err != nil {
			return nil, fmt.Errorf("farm: %w", err)
		}
		resolver = f.tenancy.resolver
		admit = (&tenant.Admission{DefaultTimeout: cfg.DefaultActionTimeout, InFlight: f.tenancy.inFlight(f.sched)}).Admit
		serverOpts = append(serverOpts, grpc.ChainUnaryInterceptor(f.tenancy.auth.UnaryInterceptor()),
			grpc.ChainStreamInterceptor(f.tenancy.auth.StreamInterceptor()))
	} else if resolver, err = reapi.NewStaticResolver(inst); err != nil {
		return nil, fmt.Errorf("farm: %w", err)
	}
	var bs bytestream.ByteStreamServer
	if bs, err = reapi.NewByteStreamServer(resolver, reapi.WithUploadDir(filepath.Join(cfg.DataDir, "uploads"))); err != nil {
		return nil, fmt.Errorf("farm: %w", err)
	}
	f.grpc = grpc.NewServer(serverOpts...)
	repb.RegisterCapabilitiesServer(f.grpc, reapi.NewCapabilitiesServer(resolver, reapi.WithExecution(true)))
	repb.RegisterContentAddressableStorageServer(f.grpc, reapi.NewCASServer(resolver))
	repb.RegisterActionCacheServer(f.grpc, reapi.NewActionCacheServer(resolver))
	bytestream.RegisterByteStreamServer(f.grpc, bs)
	reapi.RegisterExecution(f.grpc, reapi.NewExecutionServer(resolver, f.sched,
		reapi.WithMaxTimeout(cfg.MaxActionTimeout),
		reapi.WithTaskAdmitter(admit),
		reapi.WithCacheHitHook(f.metrics.cacheHits.Inc)))
	return f, nil
}

// Serve serves gRPC on lis (and metrics on metricsLis, if not nil) until ctx
// is cancelled, then shuts down: no new actions are accepted, running ones
// get grace to finish and are cancelled after it, and the execution log is
// flushed and closed.
func (f *Farm) Serve(ctx context.Context, lis net.Listener, metricsLis net.Listener, grace time.Duration) error {
	runCtx, stopRun := context.WithCancel(context.Background())
	f.stopRun = stopRun
	if f.tenancy != nil {
		f.startPoolRunners(runCtx)
	}
	for i := 0; f.tenancy == nil && i < f.cfg.Workers; i++ {
		var exec Executor = workerExecutor{f.worker}
		if f.signing != nil {
			exec = signingExecutor{base: exec, handler: f.signing}
		}
		r := &runner{id: workerName("local", i), sched: f.sched, exec: exec, log: f.execlog,
			results: f.ac, logger: f.log, metrics: f.metrics}
		f.runners.Add(1)
		go func() { defer f.runners.Done(); r.loop(runCtx) }()
	}
	var httpSrv *http.Server
	if metricsLis != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(f.reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go httpSrv.Serve(metricsLis)
		f.log.Info("metrics listening", "addr", metricsLis.Addr().String())
	}
	progressDone := make(chan struct{})
	go func() { defer close(progressDone); f.progress(runCtx) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- f.grpc.Serve(lis) }()
	f.log.Info("hallmark-builder serving", "addr", lis.Addr().String(), "workers", f.cfg.Workers, "data", f.cfg.DataDir)

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	f.shutdown(grace)
	stopRun()
	<-progressDone
	if httpSrv != nil {
		httpSrv.Close()
	}
	return err
}

func (f *Farm) shutdown(grace time.Duration) {
	st := f.sched.Stats()
	f.log.Info("shutting down", "queued", st.Queued, "executing", st.Executing, "grace", grace.String())
	f.sched.Close()
	done := make(chan struct{})
	go func() { f.runners.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		f.log.Warn("grace period over: cancelling running actions")
		f.sched.Abort()
		<-done
	}
	stopped := make(chan struct{})
	go func() { f.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		f.grpc.Stop()
	}
	seq, head := f.execlog.Head()
	f.closeStores()
	f.log.Info("stopped", "log_records", seq, "log_head", head.String())
}

// closeStores flushes and closes what New opened.
func (f *Farm) closeStores() {
	// The gVisor runner the farm made keeps warm sandboxes running.
	if c, ok := f.tiers.gvisor.(interface{ Close() error }); ok && f.cfg.GVisor == nil {
		c.Close()
	}
	if f.execlog != nil {
		if err := f.execlog.Close(); err != nil {
			f.log.Error("closing the execution log", "err", err)
		}
	}
	if f.cas != nil {
		if err := f.cas.Close(); err != nil {
			f.log.Error("closing the CAS", "err", err)
		}
	}
}

// progress logs one line every interval while there is work.
func (f *Farm) progress(ctx context.Context) {
	t := time.NewTicker(f.cfg.ProgressInterval)
	defer t.Stop()
	var lastSeq uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := f.sched.Stats()
		seq, _ := f.execlog.Head()
		if st.Queued == 0 && st.Executing == 0 && seq == lastSeq {
			continue
		}
		f.log.Info("progress", "queued", st.Queued, "executing", st.Executing, "executed_since_last", seq-lastSeq,
			"executed_total", seq, "cas_bytes", f.cas.Used())
		lastSeq = seq
	}
}

// checkTraversable makes sure sandboxes, which run as unprivileged uids, can
// reach the per-action directories under dir: every ancestor needs search
// permission for others.
func checkTraversable(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := abs; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("sandboxed actions run as unprivileged users and cannot reach the data directory %s: %s has mode %v without search permission for others; run `chmod o+x %s` or choose a --data directory elsewhere (for example under /var/lib)", abs, p, fi.Mode().Perm(), p)
		}
		if p == "/" {
			return nil
		}
	}
}

type workerExecutor struct{ w *worker.Worker }

func (e workerExecutor) Execute(ctx context.Context, t *scheduler.Task) (*repb.ActionResult, bool, error) {
	out, err := e.w.Execute(ctx, worker.Job{Action: t.Action, Command: t.Command, InlineStdioLimit: 0})
	if err != nil {
		return nil, false, err
	}
	return out.Result, out.TimedOut, nil
}
