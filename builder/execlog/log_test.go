package execlog_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/execlog"
)

func rec(i int) execlog.Record {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	return execlog.Record{
		Instance:  "main",
		Action:    digest.OfBytes([]byte(fmt.Sprintf("action %d", i))),
		Command:   digest.OfBytes([]byte(fmt.Sprintf("command %d", i))),
		InputRoot: digest.OfBytes([]byte(fmt.Sprintf("root %d", i))),
		Platform:  []execlog.Property{{Name: "OSFamily", Value: "linux"}},
		Outputs: []execlog.OutputFile{
			{Path: fmt.Sprintf("bazel-out/k8-fastbuild/bin/out%d", i), Digest: digest.OfBytes([]byte(fmt.Sprintf("out %d", i))), IsExecutable: i%2 == 0},
		},
		OutputDirectories: []execlog.OutputDirectory{
			{Path: "bazel-out/dir", Tree: digest.OfBytes([]byte(fmt.Sprintf("tree %d", i))), Root: digest.OfBytes([]byte(fmt.Sprintf("dirroot %d", i)))},
		},
		OutputSymlinks: []execlog.OutputSymlink{{Path: "bazel-out/link", Target: "out"}},
		Stdout:         digest.OfBytes([]byte("stdout")),
		ExitCode:       int32(i % 3),
		Worker:         "w1",
		Queued:         t0,
		Started:        t0.Add(time.Millisecond),
		Completed:      t0.Add(time.Second),
		Request: &execlog.RequestMetadata{
			ToolName: "bazel", ToolVersion: "4.2.3", ToolInvocationID: "inv-1",
			ActionID: fmt.Sprintf("a%d", i), TargetID: "//pkg:t", ActionMnemonic: "GoCompile",
		},
	}
}

func fill(t *testing.T, dir string, n int) {
	t.Helper()
	l, err := execlog.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		seq, err := l.Append(context.Background(), rec(i))
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i) {
			t.Fatalf("Append returned seq %d, want %d", seq, i)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// frameOffsets returns the start offset of every frame in the log file.
func frameOffsets(t *testing.T, b []byte) []int {
	t.Helper()
	var offs []int
	for p := 0; p < len(b); {
		offs = append(offs, p)
		n := int(b[p+4])<<24 | int(b[p+5])<<16 | int(b[p+6])<<8 | int(b[p+7])
		p += 8 + n + 32
	}
	return offs
}

func TestAppendReopen(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, 5)
	l, err := execlog.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	seq, head := l.Head()
	if seq != 5 || head.IsZero() {
		t.Fatalf("Head = %d %s, want 5 and a hash", seq, head)
	}
	got, ok := l.Get(3)
	if !ok {
		t.Fatal("record 3 missing")
	}
	want := rec(3)
	want.Seq, want.Prev, want.Hash = got.Seq, got.Prev, got.Hash
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("record 3 round trip:\n got %+v\nwant %+v", got, want)
	}
	if r2, _ := l.Get(2); got.Prev != r2.Hash {
		t.Fatal("record 3's prev is not record 2's hash")
	}
	if s, err := l.Append(context.Background(), rec(6)); err != nil || s != 6 {
		t.Fatalf("Append after reopen = %d, %v; want 6", s, err)
	}
	if rs := l.Lookup(rec(4).Outputs[0].Digest); len(rs) != 1 || rs[0].Seq != 4 {
		t.Fatalf("Lookup(output of 4) = %v", rs)
	}
	if rs := l.Lookup(rec(6).OutputDirectories[0].Root); len(rs) != 1 || rs[0].Seq != 6 {
		t.Fatalf("Lookup(dir root of 6) = %v", rs)
	}
	if rs := l.ByAction(rec(2).Action); len(rs) != 1 || rs[0].Seq != 2 {
		t.Fatalf("ByAction(2) = %v", rs)
	}
	if rs := l.Lookup(digest.OfBytes([]byte("nothing"))); len(rs) != 0 {
		t.Fatalf("Lookup(unknown) = %v", rs)
	}
}

func TestSecondWriterLocked(t *testing.T) {
	dir := t.TempDir()
	l, err := execlog.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := execlog.Open(dir); !errors.Is(err, execlog.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestCrashTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(b []byte, offs []int) []byte
		want uint64 // records kept
	}{
		{"TruncatedMidRecord", func(b []byte, offs []int) []byte { return b[:offs[3]+20] }, 3},
		{"TruncatedMidHeader", func(b []byte, offs []int) []byte { return b[:offs[4]+3] }, 4},
		{"TruncatedInTrailer", func(b []byte, offs []int) []byte { return b[:len(b)-5] }, 4},
		{"GarbageTail", func(b []byte, offs []int) []byte { return append(b, []byte("\x00\x00garbage from a torn write")...) }, 5},
		{"ZeroFilledTail", func(b []byte, offs []int) []byte { return append(b[:offs[4]+10], make([]byte, 4096)...) }, 4},
		{"LastRecordBitFlip", func(b []byte, offs []int) []byte { b[offs[4]+30] ^= 1; return b }, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fill(t, dir, 5)
			p := filepath.Join(dir, execlog.FileName)
			b, _ := os.ReadFile(p)
			b = tc.mod(b, frameOffsets(t, b))
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			// A reader sees only complete records and does not modify the file.
			r, err := execlog.OpenReadOnly(dir)
			if err != nil {
				t.Fatalf("OpenReadOnly: %v", err)
			}
			if s, _ := r.Head(); s != tc.want {
				t.Fatalf("reader head %d, want %d", s, tc.want)
			}
			l, err := execlog.Open(dir)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if s, _ := l.Head(); s != tc.want {
				t.Fatalf("head after cut %d, want %d", s, tc.want)
			}
			torn, _ := filepath.Glob(filepath.Join(dir, "torn-*.bin"))
			if len(torn) != 1 {
				t.Fatalf("torn tail not saved: %v", torn)
			}
			if s, err := l.Append(context.Background(), rec(9)); err != nil || s != tc.want+1 {
				t.Fatalf("Append after cut = %d, %v", s, err)
			}
			l.Close()
			// The result is a clean log.
			f, _ := os.Open(p)
			defer f.Close()
			if s, _, err := execlog.VerifyStream(p, f); err != nil || s != tc.want+1 {
				t.Fatalf("VerifyStream = %d, %v", s, err)
			}
		})
	}
}

func TestTampering(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(b []byte, offs []int) []byte
		wantSeq uint64
		reason  string
	}{
		{"ByteModified", func(b []byte, offs []int) []byte { b[offs[2]+40] ^= 0x20; return b }, 3, "hash does not match"},
		{"RecordDeleted", func(b []byte, offs []int) []byte {
			return append(append([]byte{}, b[:offs[1]]...), b[offs[2]:]...)
		}, 3, "sequence number 3 where 2 was expected"},
		{"RecordsSwapped", func(b []byte, offs []int) []byte {
			out := append([]byte{}, b[:offs[1]]...)
			out = append(out, b[offs[2]:offs[3]]...)
			out = append(out, b[offs[1]:offs[2]]...)
			return append(out, b[offs[3]:]...)
		}, 3, "where 2 was expected"},
		{"LengthFieldDamaged", func(b []byte, offs []int) []byte { b[offs[1]+5] = 0xff; return b }, 2, "a valid record follows"},
		{"HashRecomputedButChainBroken", func(b []byte, offs []int) []byte {
			// Rewrite record 2's content and fix up its own hash: record 3's
			// prev no longer matches.
			return rehash(b, offs[1], "w1", "w2")
		}, 3, "prev hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fill(t, dir, 5)
			p := filepath.Join(dir, execlog.FileName)
			b, _ := os.ReadFile(p)
			b = tc.mod(b, frameOffsets(t, b))
			os.WriteFile(p, b, 0o644)
			check := func(what string, err error) {
				t.Helper()
				var ce *execlog.CorruptError
				if !errors.As(err, &ce) || !errors.Is(err, execlog.ErrCorrupt) {
					t.Fatalf("%s: got %v, want a CorruptError", what, err)
				}
				if ce.Seq != tc.wantSeq || !strings.Contains(ce.Reason, tc.reason) {
					t.Fatalf("%s: %v; want record %d and %q", what, err, tc.wantSeq, tc.reason)
				}
			}
			_, err := execlog.Open(dir)
			check("Open", err)
			_, err = execlog.OpenReadOnly(dir)
			check("OpenReadOnly", err)
			_, _, err = execlog.VerifyStream(p, strings.NewReader(string(b)))
			check("VerifyStream", err)
			// The writer did not cut anything away.
			if now, _ := os.ReadFile(p); string(now) != string(b) {
				t.Fatal("Open modified a corrupt log")
			}
		})
	}
}

// rehash replaces old with new in the body of the frame at off and rewrites
// its length and hash, as an attacker with write access could.
func rehash(b []byte, off int, old, new string) []byte {
	n := int(b[off+4])<<24 | int(b[off+5])<<16 | int(b[off+6])<<8 | int(b[off+7])
	body := strings.Replace(string(b[off+8:off+8+n]), old, new, 1)
	var frame []byte
	frame = append(frame, "HXL1"...)
	frame = append(frame, byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body)))
	frame = append(frame, body...)
	h := digest.OfBytes([]byte(body)).Hash
	hb := make([]byte, 32)
	fmt.Sscanf(h, "%x", &hb)
	frame = append(frame, hb...)
	out := append([]byte{}, b[:off]...)
	out = append(out, frame...)
	return append(out, b[off+8+n+32:]...)
}

func TestReaderFollowsWriterAndDetectsLaterEdits(t *testing.T) {
	dir := t.TempDir()
	l, err := execlog.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := execlog.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		l.Append(context.Background(), rec(i))
	}
	if s, _ := r.Head(); s != 0 {
		t.Fatalf("reader saw %d records before Refresh", s)
	}
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	if s, _ := r.Head(); s != 3 {
		t.Fatalf("reader head %d after Refresh, want 3", s)
	}
	if len(r.Lookup(rec(2).Outputs[0].Digest)) != 1 {
		t.Fatal("reader Lookup missed record 2")
	}
	l.Append(context.Background(), rec(4))
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(4); err != nil {
		t.Fatalf("Verify(4) on an intact log: %v", err)
	}
	if err := r.Verify(5); err == nil {
		t.Fatal("Verify(5) of an unknown record succeeded")
	}
	l.Close()
	// Edit record 2 in place after the reader loaded it.
	p := filepath.Join(dir, execlog.FileName)
	b, _ := os.ReadFile(p)
	offs := frameOffsets(t, b)
	os.WriteFile(p, rehash(b, offs[1], "w1", "w9"), 0o644)
	var ce *execlog.CorruptError
	if err := r.Verify(4); !errors.As(err, &ce) || ce.Seq != 2 {
		t.Fatalf("Verify(4) after editing record 2: %v", err)
	}
	if err := r.Verify(1); err != nil {
		t.Fatalf("Verify(1) before the edit: %v", err)
	}
}

func TestConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	l, err := execlog.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 16, 50
	var wg sync.WaitGroup
	seqs := make(chan uint64, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				s, err := l.Append(context.Background(), rec(w*each+i))
				if err != nil {
					t.Error(err)
					return
				}
				if _, ok := l.Get(s); !ok {
					t.Errorf("record %d not visible after Append returned", s)
				}
				seqs <- s
			}
		}(w)
	}
	wg.Wait()
	close(seqs)
	l.Close()
	seen := map[uint64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d returned twice", s)
		}
		seen[s] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct seqs, want %d", len(seen), workers*each)
	}
	f, _ := os.Open(filepath.Join(dir, execlog.FileName))
	defer f.Close()
	if s, _, err := execlog.VerifyStream("log", f); err != nil || s != workers*each {
		t.Fatalf("VerifyStream = %d, %v", s, err)
	}
}

func TestAppendRejectsBadRecordAndClosed(t *testing.T) {
	l, err := execlog.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bad := rec(1)
	bad.Outputs = append(bad.Outputs, execlog.OutputFile{Path: "x"})
	if _, err := l.Append(context.Background(), bad); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("Append of an output without digest: %v", err)
	}
	if s, err := l.Append(context.Background(), rec(1)); err != nil || s != 1 {
		t.Fatalf("Append after a rejected record = %d, %v; want 1", s, err)
	}
	l.Close()
	if _, err := l.Append(context.Background(), rec(2)); !errors.Is(err, execlog.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
}
