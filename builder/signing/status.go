package signing

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// CommitKey is the stable workspace status key that carries the commit the
// client claims its sources come from.
const CommitKey = "STABLE_HALLMARK_COMMIT"

// MaxStatusBytes bounds the stable-status file the handler reads.
const MaxStatusBytes = 1 << 20

// ParseStatus reads a Bazel workspace status file ("KEY VALUE" per line,
// the value being the rest of the line). Lines without a value map to "".
// A key given twice is an error, so the claim cannot be ambiguous.
func ParseStatus(b []byte) (map[string]string, error) {
	if len(b) > MaxStatusBytes {
		return nil, fmt.Errorf("the status file is %d bytes, the limit is %d", len(b), MaxStatusBytes)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), MaxStatusBytes+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		if k == "" {
			return nil, fmt.Errorf("status line %d starts with a space", n)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("status key %s is given twice (line %d)", k, n)
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the status file: %w", err)
	}
	return out, nil
}

// ParseCommit checks a claimed commit: a full lower-case hex object name
// (40 characters for SHA-1 repositories, 64 for SHA-256 ones).
func ParseCommit(s string) (string, error) {
	s = strings.TrimSpace(s)
	if len(s) != 40 && len(s) != 64 {
		return "", fmt.Errorf("%s %q is not a full commit id (40 or 64 hex characters)", CommitKey, s)
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("%s %q is not a full commit id (lower-case hex)", CommitKey, s)
		}
	}
	return s, nil
}
