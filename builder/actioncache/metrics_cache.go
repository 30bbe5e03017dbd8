package actioncache

import (
	"context"
	"errors"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// metricsCache counts lookups by result, so the cache hit rate can be
// graphed: hits / (hits + misses).
type metricsCache struct {
	base    Cache
	lookups *prometheus.CounterVec
}

// NewMetricsCache counts base's Get calls in
// hallmark_action_cache_lookups_total{result="hit|miss|error"}. Several
// caches may share one registerer: the counter is registered once.
func NewMetricsCache(base Cache, reg prometheus.Registerer) (Cache, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hallmark_action_cache_lookups_total",
		Help: "ActionCache lookups by result (hit, miss, error).",
	}, []string{"result"})
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		c = are.ExistingCollector.(*prometheus.CounterVec)
	}
	return &metricsCache{base: base, lookups: c}, nil
}

func (m *metricsCache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	res, err := m.base.Get(ctx, instance, action)
	switch {
	case err == nil:
		m.lookups.WithLabelValues("hit").Inc()
	case errors.Is(err, ErrNotFound):
		m.lookups.WithLabelValues("miss").Inc()
	default:
		m.lookups.WithLabelValues("error").Inc()
	}
	return res, err
}

func (m *metricsCache) Put(ctx context.Context, instance string, action digest.Digest, res *repb.ActionResult) error {
	return m.base.Put(ctx, instance, action, res)
}
