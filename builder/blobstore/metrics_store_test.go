package blobstore_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

func TestMetricsStore(t *testing.T) {
	reg := prometheus.NewRegistry()
	disk, _ := newDisk(t)
	s, err := blobstore.NewMetricsStore(disk, reg)
	if err != nil {
		t.Fatal(err)
	}
	d := put(t, s, "counted")
	if _, err := get(t, s, d, 0); err != nil {
		t.Fatal(err)
	}
	absent := digest.OfBytes([]byte("absent"))
	get(t, s, absent, 0)
	missing(t, s, d, absent)
	s.Put(context.Background(), absent, strings.NewReader("wrong"))

	got := gather(t, reg)
	for name, want := range map[string]float64{
		"hallmark_cas_bytes_read_total":                         7,
		"hallmark_cas_bytes_written_total":                      7,
		"hallmark_cas_find_missing_blobs_total{result=missing}": 1,
		"hallmark_cas_find_missing_blobs_total{result=present}": 1,
		"hallmark_cas_gets_total{result=hit}":                   1,
		"hallmark_cas_gets_total{result=miss}":                  1,
		"hallmark_cas_put_failures_total":                       1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if p, ok := blobstore.As[blobstore.Pinner](s); !ok || p != blobstore.Pinner(disk) {
		t.Fatal("As[Pinner] does not reach the disk store through the decorator")
	}
	if _, err := blobstore.NewMetricsStore(disk, reg); err == nil {
		t.Fatal("registering twice succeeded")
	}
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			out[name] = m.GetCounter().GetValue()
		}
	}
	return out
}
