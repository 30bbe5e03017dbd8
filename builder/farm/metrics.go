package farm

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type metrics struct {
	executing prometheus.Gauge
	duration  prometheus.Histogram
	actions   *prometheus.CounterVec
	cacheHits prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		executing: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "hallmark", Subsystem: "execution", Name: "executing_actions", Help: "Actions executing on workers now."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "hallmark", Subsystem: "execution", Name: "action_duration_seconds", Help: "Wall time of executed actions, input staging to output upload.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16)}),
		actions:   prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "hallmark", Subsystem: "execution", Name: "actions_total", Help: "Executed actions by outcome (ok, nonzero, timeout, error)."}, []string{"outcome"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "hallmark", Subsystem: "execution", Name: "cache_hits_total", Help: "Execute calls answered from the ActionCache."}),
	}
	reg.MustRegister(m.executing, m.duration, m.actions, m.cacheHits)
	return m
}

func tsOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
