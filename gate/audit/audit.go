// Package audit is the gate's append-only audit log: one JSON object per
// line, one line per decision (who, what, when, why), written with O_APPEND
// and synced, so a crash never leaves a half-written earlier record.
//
// The same records are the gate's memory of admitted workloads: recheck
// reads them back and re-evaluates the workloads against the current policy
// and keys.
package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hallmark-build/hallmark/gate/policy"
)

// Record is one line of the audit log.
type Record struct {
	Time time.Time `json:"time"`
	// Kind is "admission" (a workload's image was decided), "break-glass"
	// (an admission despite violations, with a justification) or "recheck".
	Kind string `json:"kind"`
	// Workload names the Kubernetes object (namespace/kind/name) or the CLI
	// invocation, and RequestUID the AdmissionReview request.
	Workload   string `json:"workload,omitempty"`
	RequestUID string `json:"requestUid,omitempty"`
	// User is who asked (the Kubernetes user, or the local user for the CLI).
	User     string          `json:"user,omitempty"`
	Decision policy.Decision `json:"decision"`
	// Facts are everything known about the image when it was decided.
	Facts policy.Facts `json:"facts"`
}

// Kinds of records.
const (
	KindAdmission  = "admission"
	KindBreakGlass = "break-glass"
	KindRecheck    = "recheck"
)

// Log appends records to a file. It is safe for concurrent use.
type Log struct {
	mu sync.Mutex
	f  *os.File
}

// Open opens (creating if needed) the log at path for appending.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return &Log{f: f}, nil
}

// Append writes r as one line and syncs it to disk.
func (l *Log) Append(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("audit: writing %s: %w", l.f.Name(), err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit: syncing %s: %w", l.f.Name(), err)
	}
	return nil
}

// Close closes the file.
func (l *Log) Close() error { return l.f.Close() }

// MaxLine bounds one record when reading.
const MaxLine = 4 << 20

// ErrCorrupt reports a line that is not a record. A torn final line (no
// newline) is skipped, not an error: it is a write a crash interrupted.
var ErrCorrupt = errors.New("audit: corrupt record")

// Read calls fn for every record in the log at path, in order.
func Read(path string, fn func(Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			var buf []byte
			buf = append(buf, line...)
			for errors.Is(err, bufio.ErrBufferFull) && len(buf) <= MaxLine {
				line, err = br.ReadSlice('\n')
				buf = append(buf, line...)
			}
			if len(buf) > MaxLine {
				return fmt.Errorf("%w: %s line %d is longer than %d bytes", ErrCorrupt, path, n, MaxLine)
			}
			line = buf
		}
		if errors.Is(err, io.EOF) {
			return nil // empty or torn last line
		}
		if err != nil {
			return fmt.Errorf("audit: reading %s: %w", path, err)
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("%w: %s line %d: %v", ErrCorrupt, path, n, err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
}
