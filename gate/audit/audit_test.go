package audit_test

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/gate/audit"
	"github.com/hallmark-build/hallmark/gate/policy"
)

func TestAppendRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Append(audit.Record{Time: time.Now(), Kind: audit.KindAdmission, Workload: "ns/Pod/x", Decision: policy.Decision{Allow: true, Identity: "ns/sa"}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	l.Close()
	// Reopening appends, never truncates.
	l, _ = audit.Open(p)
	l.Append(audit.Record{Kind: audit.KindBreakGlass, Facts: policy.Facts{Justification: "INC-1"}})
	l.Close()

	t.Run("AllRecords", func(t *testing.T) {
		n, bg := 0, 0
		if err := audit.Read(p, func(r audit.Record) error {
			n++
			if r.Kind == audit.KindBreakGlass && r.Facts.Justification == "INC-1" {
				bg++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != 21 || bg != 1 {
			t.Fatalf("read %d records (%d break-glass), want 21 (1)", n, bg)
		}
	})
	t.Run("TornTailSkipped", func(t *testing.T) {
		f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		f.WriteString(`{"kind":"adm`)
		f.Close()
		n := 0
		if err := audit.Read(p, func(audit.Record) error { n++; return nil }); err != nil || n != 21 {
			t.Fatalf("Read = %v with %d records, want 21 and no error", err, n)
		}
	})
	t.Run("CorruptMiddleLine", func(t *testing.T) {
		q := filepath.Join(t.TempDir(), "bad.jsonl")
		os.WriteFile(q, []byte("{}\nnot json\n{}\n"), 0o644)
		err := audit.Read(q, func(audit.Record) error { return nil })
		if !errors.Is(err, audit.ErrCorrupt) {
			t.Fatalf("Read = %v, want ErrCorrupt", err)
		}
	})
}
