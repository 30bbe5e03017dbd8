package execlog_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hallmark-build/hallmark/builder/execlog"
)

// FuzzVerifyStream feeds arbitrary bytes to the frame scanner and record
// decoder: it must never panic, and whatever it accepts must re-verify.
func FuzzVerifyStream(f *testing.F) {
	dir := f.TempDir()
	l, err := execlog.Open(dir)
	if err != nil {
		f.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := l.Append(context.Background(), rec(i)); err != nil {
			f.Fatal(err)
		}
	}
	l.Close()
	good, _ := os.ReadFile(filepath.Join(dir, execlog.FileName))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("HXL1\x00\x00\x00\x02{}"))
	f.Add([]byte("HXL1\x00\x00\x00\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, head, err := execlog.VerifyStream("fuzz", bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, execlog.ErrCorrupt) {
				t.Fatalf("error outside the ErrCorrupt category: %v", err)
			}
			return
		}
		if seq > 0 && head.IsZero() {
			t.Fatal("accepted records with a zero head hash")
		}
	})
}
