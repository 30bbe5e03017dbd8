package blobstore

import (
	"context"
	"errors"
	"io"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// metricsStore counts what passes through a Store, so operators can see CAS
// traffic and hit rates (issue 3 asks for "CAS bytes" and cache hit rates).
type metricsStore struct {
	base     Store
	read     prometheus.Counter
	written  prometheus.Counter
	gets     *prometheus.CounterVec // result: hit, miss, error
	lookups  *prometheus.CounterVec // result: present, missing
	putFails prometheus.Counter
}

// NewMetricsStore returns base counting, under the prefix hallmark_cas_:
// bytes_read_total, bytes_written_total, gets_total{result=hit|miss|error},
// find_missing_blobs_total{result=present|missing} and put_failures_total,
// registered with reg. Optional capabilities of base stay reachable with As.
func NewMetricsStore(base Store, reg prometheus.Registerer) (Store, error) {
	m := &metricsStore{
		base: base,
		read: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hallmark_cas_bytes_read_total", Help: "Bytes read from the CAS by Get.",
		}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hallmark_cas_bytes_written_total", Help: "Bytes stored in the CAS by successful Puts.",
		}),
		gets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hallmark_cas_gets_total", Help: "CAS Get calls by result.",
		}, []string{"result"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hallmark_cas_find_missing_blobs_total", Help: "Blobs asked about by FindMissing, by result.",
		}, []string{"result"}),
		putFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hallmark_cas_put_failures_total", Help: "Failed CAS Put calls.",
		}),
	}
	for _, c := range []prometheus.Collector{m.read, m.written, m.gets, m.lookups, m.putFails} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metricsStore) Unwrap() Store { return m.base }

func (m *metricsStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	rc, err := m.base.Get(ctx, d, offset)
	switch {
	case err == nil:
		m.gets.WithLabelValues("hit").Inc()
		return &countingReader{rc, m.read}, nil
	case errors.Is(err, ErrNotFound):
		m.gets.WithLabelValues("miss").Inc()
	default:
		m.gets.WithLabelValues("error").Inc()
	}
	return nil, err
}

func (m *metricsStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	if err := m.base.Put(ctx, d, r); err != nil {
		m.putFails.Inc()
		return err
	}
	m.written.Add(float64(d.Size))
	return nil
}

func (m *metricsStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	missing, err := m.base.FindMissing(ctx, ds)
	if err == nil {
		m.lookups.WithLabelValues("missing").Add(float64(len(missing)))
		m.lookups.WithLabelValues("present").Add(float64(len(ds) - len(missing)))
	}
	return missing, err
}

type countingReader struct {
	io.ReadCloser
	c prometheus.Counter
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.c.Add(float64(n))
	return n, err
}
