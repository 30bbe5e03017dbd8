package execlog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// FuzzRecordBody wraps arbitrary bytes in a frame with a correct hash, so
// the fuzzer reaches the JSON record decoder and the chain checks.
func FuzzRecordBody(f *testing.F) {
	dir := f.TempDir()
	l, err := execlog.Open(dir)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := l.Append(context.Background(), rec(1)); err != nil {
		f.Fatal(err)
	}
	l.Close()
	good, _ := os.ReadFile(filepath.Join(dir, execlog.FileName))
	f.Add(good[8 : len(good)-32])
	f.Add([]byte(`{"v":1,"seq":1,"prev":"` + strings.Repeat("0", 64) + `","action":"x/1"}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > execlog.MaxRecordSize {
			return
		}
		sum := sha256.Sum256(body)
		frame := []byte("HXL1")
		frame = binary.BigEndian.AppendUint32(frame, uint32(len(body)))
		frame = append(frame, body...)
		frame = append(frame, sum[:]...)
		seq, head, err := execlog.VerifyStream("fuzz", bytes.NewReader(frame))
		if err != nil {
			var ce *execlog.CorruptError
			if !errors.As(err, &ce) || ce.Seq != 1 {
				t.Fatalf("error does not name record 1: %v", err)
			}
			return
		}
		if seq != 1 || head != execlog.Hash(sum) {
			t.Fatalf("accepted frame as seq %d head %s", seq, head)
		}
	})
}
