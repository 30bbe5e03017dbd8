package bazeltest

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Stats is Bazel's summary of the processes (spawns) of one command, from its
// line "INFO: 35 processes: 10 internal, 25 linux-sandbox." Bazel 4.2.3 names
// the strategies "internal", "remote", "remote cache hit", "linux-sandbox",
// "local", "processwrapper-sandbox", "worker", "disk cache hit".
type Stats struct {
	// Total is the number of processes Bazel reports.
	Total int
	// ByKind maps each strategy name to its count.
	ByKind map[string]int
}

// Remote is the number of processes executed remotely.
func (s Stats) Remote() int { return s.ByKind["remote"] }

// RemoteCacheHit is the number of processes served from the remote ActionCache.
func (s Stats) RemoteCacheHit() int { return s.ByKind["remote cache hit"] }

// Internal is the number of processes Bazel ran inside itself.
func (s Stats) Internal() int { return s.ByKind["internal"] }

// Local is the number of processes executed on this machine by any local
// strategy (sandboxed or not, workers included).
func (s Stats) Local() int {
	n := 0
	for _, k := range []string{"local", "linux-sandbox", "processwrapper-sandbox", "sandbox", "worker", "darwin-sandbox", "docker"} {
		n += s.ByKind[k]
	}
	return n
}

// String renders the stats the way Bazel prints them.
func (s Stats) String() string {
	parts := make([]string, 0, len(s.ByKind))
	for _, k := range sortedKeys(s.ByKind) {
		parts = append(parts, fmt.Sprintf("%d %s", s.ByKind[k], k))
	}
	return fmt.Sprintf("%d processes: %s", s.Total, strings.Join(parts, ", "))
}

var (
	statsLine = regexp.MustCompile(`(?m)^INFO: ([0-9]+) process(?:es)?(?:: (.*?))?\.?\s*$`)
	statsPart = regexp.MustCompile(`^([0-9]+) ([a-z][a-z -]*[a-z])$`)
)

// ParseStats finds the last process summary line in Bazel's output and parses
// it. It reports an error when there is none or when it is malformed; counts
// that do not add up to the total are an error too.
func ParseStats(output string) (Stats, error) {
	m := statsLine.FindAllStringSubmatch(output, -1)
	if len(m) == 0 {
		return Stats{}, fmt.Errorf("bazeltest: no %q line in Bazel's output", "INFO: N processes: ...")
	}
	last := m[len(m)-1]
	total, err := strconv.Atoi(last[1])
	if err != nil || total < 0 {
		return Stats{}, fmt.Errorf("bazeltest: bad process count %q in %q", last[1], last[0])
	}
	s := Stats{Total: total, ByKind: map[string]int{}}
	sum := 0
	if strings.TrimSpace(last[2]) != "" {
		for _, p := range strings.Split(last[2], ",") {
			p = strings.TrimSpace(p)
			pm := statsPart.FindStringSubmatch(p)
			if pm == nil {
				return Stats{}, fmt.Errorf("bazeltest: cannot parse %q in process summary %q", p, last[0])
			}
			n, err := strconv.Atoi(pm[1])
			if err != nil || n < 0 {
				return Stats{}, fmt.Errorf("bazeltest: bad count %q in process summary %q", pm[1], last[0])
			}
			if _, dup := s.ByKind[pm[2]]; dup {
				return Stats{}, fmt.Errorf("bazeltest: %q appears twice in process summary %q", pm[2], last[0])
			}
			s.ByKind[pm[2]] = n
			sum += n
			if sum > total || sum < 0 {
				break
			}
		}
	}
	if sum != total {
		return Stats{}, fmt.Errorf("bazeltest: process counts add up to %d, not %d, in %q", sum, total, last[0])
	}
	return s, nil
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
