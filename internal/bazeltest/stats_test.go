package bazeltest_test

import (
	"strings"
	"testing"

	"github.com/hallmark-build/hallmark/internal/bazeltest"
)

func TestParseStats(t *testing.T) {
	for _, tc := range []struct {
		name, out              string
		total, remote, hit, in int
		local                  int
		wantErr                string
	}{
		{name: "LinuxSandbox", out: "INFO: Elapsed time: 47.010s\nINFO: 35 processes: 10 internal, 25 linux-sandbox.\nINFO: Build completed", total: 35, in: 10, local: 25},
		{name: "Remote", out: "INFO: 12 processes: 3 internal, 9 remote.\n", total: 12, in: 3, remote: 9},
		{name: "CacheHits", out: "INFO: 30 processes: 21 remote cache hit, 9 internal.\n", total: 30, hit: 21, in: 9},
		{name: "Singular", out: "INFO: 1 process: 1 internal.\n", total: 1, in: 1},
		{name: "Zero", out: "INFO: 0 processes.\n", total: 0},
		{name: "LastWins", out: "INFO: 2 processes: 2 internal.\nINFO: 5 processes: 5 remote.\n", total: 5, remote: 5},
		{name: "Missing", out: "INFO: Build completed successfully\n", wantErr: "no \"INFO: N processes"},
		{name: "BadSum", out: "INFO: 5 processes: 2 remote.\n", wantErr: "add up to 2, not 5"},
		{name: "Garbage", out: "INFO: 5 processes: five remote.\n", wantErr: "cannot parse"},
		{name: "Duplicate", out: "INFO: 4 processes: 2 remote, 2 remote.\n", wantErr: "appears twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := bazeltest.ParseStats(tc.out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseStats error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Total != tc.total || s.Remote() != tc.remote || s.RemoteCacheHit() != tc.hit || s.Internal() != tc.in || s.Local() != tc.local {
				t.Errorf("ParseStats = %v (remote %d, hit %d, internal %d, local %d), want total %d remote %d hit %d internal %d local %d",
					s, s.Remote(), s.RemoteCacheHit(), s.Internal(), s.Local(), tc.total, tc.remote, tc.hit, tc.in, tc.local)
			}
		})
	}
}

func FuzzParseStats(f *testing.F) {
	f.Add("INFO: 35 processes: 10 internal, 25 linux-sandbox.\n")
	f.Add("INFO: 30 processes: 21 remote cache hit, 9 internal.")
	f.Add("INFO: 1 process: 1 internal.\n")
	f.Add("INFO: 99999999999999999999 processes: 1 remote.\n")
	f.Add("INFO: 3 processes: 9223372036854775807 remote, 9223372036854775807 local.\n")
	f.Fuzz(func(t *testing.T, out string) {
		s, err := bazeltest.ParseStats(out)
		if err != nil {
			return
		}
		sum := 0
		for _, n := range s.ByKind {
			if n < 0 {
				t.Fatalf("negative count in %v", s)
			}
			sum += n
		}
		if sum != s.Total {
			t.Fatalf("counts %v do not add up to total %d", s.ByKind, s.Total)
		}
	})
}
