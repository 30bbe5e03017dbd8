package trace

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// Allowlist pins third-party repositories: for each repository name, the
// tree digests (see Result.ThirdParty) that are allowed.
type Allowlist map[string]map[digest.Digest]bool

// Allows reports whether repository name with tree digest d is listed.
func (a Allowlist) Allows(name string, d digest.Digest) bool { return a[name][d] }

// ParseAllowlist reads the allowlist file format: one entry per line,
// "<repository name> <sha256 hex>/<size>", blank lines and lines starting
// with '#' ignored. A repository may appear on several lines (several
// allowed trees).
func ParseAllowlist(b []byte) (Allowlist, error) {
	a := Allowlist{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("allowlist line %d: want \"<repository> <hash>/<size>\", got %d fields", n, len(f))
		}
		if !validRepoName(f[0]) {
			return nil, fmt.Errorf("allowlist line %d: invalid repository name %q", n, clip(f[0]))
		}
		d, err := digest.Parse(f[1])
		if err != nil {
			return nil, fmt.Errorf("allowlist line %d: %w", n, err)
		}
		if a[f[0]] == nil {
			a[f[0]] = map[digest.Digest]bool{}
		}
		a[f[0]][d] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("allowlist: %w", err)
	}
	return a, nil
}

func validRepoName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 256 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_-.~+@", c)) {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
