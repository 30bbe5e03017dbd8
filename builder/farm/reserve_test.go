package farm

import (
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/builder/tenant"
)

func TestReservedSlots(t *testing.T) {
	now := time.Unix(1000, 0)
	st := func(r tenant.Ring) *tenantState { return &tenantState{cfg: &tenant.Tenant{Ring: r}} }
	for _, tc := range []struct {
		name       string
		capacity   int
		executing  map[string]int
		lastActive map[string]time.Duration // ago
		want       int
	}{
		{"AloneTakesAll", 4, map[string]int{"big": 3}, map[string]time.Duration{"big": 0}, 0},
		{"IdleNeighbourLongAgo", 4, map[string]int{"big": 3}, map[string]time.Duration{"big": 0, "small": time.Minute}, 0},
		{"RecentNeighbourKeepsItsShare", 4, map[string]int{"big": 3}, map[string]time.Duration{"big": 0, "small": time.Second}, 2},
		{"NeighbourRunningOneOfTwo", 4, map[string]int{"big": 2, "small": 1}, map[string]time.Duration{"big": 0, "small": 0}, 1},
		{"NeighbourAtItsShare", 4, map[string]int{"big": 2, "small": 2}, map[string]time.Duration{"big": 0, "small": 0}, 0},
		{"OneSlotPoolNeverReserved", 1, map[string]int{}, map[string]time.Duration{"small": 0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := &tenancy{
				capacity:   map[tenant.Pool]int{tenant.ProductionPool: tc.capacity},
				states:     map[string]*tenantState{"big": st(tenant.Sensitive), "small": st(tenant.Sensitive), "dev": st(tenant.Unhardened)},
				executing:  tc.executing,
				lastActive: map[string]time.Time{},
			}
			for n, ago := range tc.lastActive {
				tn.lastActive[n] = now.Add(-ago)
			}
			if got := tn.reservedLocked(tenant.ProductionPool, "big", now); got != tc.want {
				t.Fatalf("reserved %d slots, want %d", got, tc.want)
			}
		})
	}
}
