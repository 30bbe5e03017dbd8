package actioncache_test

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hallmark-build/hallmark/builder/actioncache"
	"github.com/hallmark-build/hallmark/builder/digest"
)

func TestMetricsCache(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	c, err := actioncache.NewMetricsCache(actioncache.NewMemory(), reg)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.OfBytes([]byte("action"))
	t.Run("Miss", func(t *testing.T) {
		if _, err := c.Get(ctx, "", d); err == nil {
			t.Fatal("hit in an empty cache")
		}
	})
	t.Run("Hit", func(t *testing.T) {
		if err := c.Put(ctx, "", d, &repb.ActionResult{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, "", d); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SharedRegisterer", func(t *testing.T) {
		if _, err := actioncache.NewMetricsCache(actioncache.NewMemory(), reg); err != nil {
			t.Fatalf("a second cache on the same registerer: %v", err)
		}
	})
	mfs, _ := reg.Gather()
	if len(mfs) != 1 {
		t.Fatalf("%d metric families, want 1", len(mfs))
	}
	cv := mfs[0].GetMetric()
	got := map[string]float64{}
	for _, m := range cv {
		got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if got["hit"] != 1 || got["miss"] != 1 {
		t.Fatalf("counts %v, want one hit and one miss", got)
	}
}
