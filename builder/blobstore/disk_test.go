package blobstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

func newDisk(t *testing.T, opts ...blobstore.DiskOption) (*blobstore.Disk, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := blobstore.NewDisk(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func put(t *testing.T, s blobstore.Store, content string) digest.Digest {
	t.Helper()
	d := digest.OfBytes([]byte(content))
	if err := s.Put(context.Background(), d, strings.NewReader(content)); err != nil {
		t.Fatalf("Put(%q): %v", content, err)
	}
	return d
}

func get(t *testing.T, s blobstore.Store, d digest.Digest, off int64) (string, error) {
	t.Helper()
	rc, err := s.Get(context.Background(), d, off)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

func missing(t *testing.T, s blobstore.Store, ds ...digest.Digest) []digest.Digest {
	t.Helper()
	m, err := s.FindMissing(context.Background(), ds)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tmpEntries(t *testing.T, dir string) int {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func TestDiskPutGet(t *testing.T) {
	s, dir := newDisk(t)
	d := put(t, s, "hello world")
	for _, tc := range []struct {
		name    string
		off     int64
		want    string
		wantErr error
	}{
		{"Whole", 0, "hello world", nil},
		{"Offset", 6, "world", nil},
		{"OffsetAtEnd", 11, "", nil},
		{"OffsetPastEnd", 12, "", blobstore.ErrOutOfRange},
		{"NegativeOffset", -1, "", blobstore.ErrOutOfRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := get(t, s, d, tc.off)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Fatalf("Get at %d = %q, %v; want %q, %v", tc.off, got, err, tc.want, tc.wantErr)
			}
		})
	}
	t.Run("Layout", func(t *testing.T) {
		p := filepath.Join(dir, d.Hash[:2], d.Hash)
		if p != blobstore.BlobPath(dir, d) {
			t.Fatalf("BlobPath = %s, want %s", blobstore.BlobPath(dir, d), p)
		}
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o444 || info.Size() != d.Size {
			t.Fatalf("blob file mode %v size %d; want 0444 and %d", info.Mode().Perm(), info.Size(), d.Size)
		}
		lp, err := s.Path(context.Background(), d)
		if err != nil || lp != p {
			t.Fatalf("Path = %q, %v; want %q", lp, err, p)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		other := digest.OfBytes([]byte("absent"))
		if _, err := get(t, s, other, 0); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("Get(absent) = %v, want ErrNotFound", err)
		}
		wrongSize := digest.MustNew(d.Hash, d.Size+1)
		if _, err := get(t, s, wrongSize, 0); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("Get(right hash, wrong size) = %v, want ErrNotFound", err)
		}
		if _, err := s.Path(context.Background(), other); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("Path(absent) = %v, want ErrNotFound", err)
		}
		if m := missing(t, s, d, other, wrongSize); len(m) != 2 || m[0] != other || m[1] != wrongSize {
			t.Fatalf("FindMissing = %v, want [%v %v]", m, other, wrongSize)
		}
	})
}

func TestDiskPutRejects(t *testing.T) {
	s, dir := newDisk(t, blobstore.WithMaxBlobBytes(100))
	good := digest.OfBytes([]byte("content"))
	for _, tc := range []struct {
		name    string
		d       digest.Digest
		content string
		wantErr error
	}{
		{"WrongHash", digest.MustNew(digest.OfBytes([]byte("other")).Hash, 7), "content", blobstore.ErrDigestMismatch},
		{"Short", digest.MustNew(good.Hash, 8), "content", blobstore.ErrDigestMismatch},
		{"Long", digest.MustNew(good.Hash, 6), "content", blobstore.ErrDigestMismatch},
		{"TooLarge", digest.OfBytes(bytes.Repeat([]byte("x"), 101)), strings.Repeat("x", 101), blobstore.ErrTooLarge},
		{"EmptyWithContent", digest.Empty, "x", blobstore.ErrDigestMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Put(context.Background(), tc.d, strings.NewReader(tc.content))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Put = %v, want %v", err, tc.wantErr)
			}
			if !tc.d.IsEmpty() {
				if m := missing(t, s, tc.d); len(m) != 1 {
					t.Fatalf("rejected blob %s is present", tc.d)
				}
				if _, err := os.Stat(blobstore.BlobPath(dir, tc.d)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("rejected blob has a file: %v", err)
				}
			}
			if n := tmpEntries(t, dir); n != 0 {
				t.Fatalf("%d files left in tmp/", n)
			}
		})
	}
	t.Run("ReaderError", func(t *testing.T) {
		r := io.MultiReader(strings.NewReader("cont"), errReader{})
		if err := s.Put(context.Background(), good, r); err == nil {
			t.Fatal("Put with failing reader succeeded")
		}
		if m := missing(t, s, good); len(m) != 1 || tmpEntries(t, dir) != 0 {
			t.Fatal("failed Put left something behind")
		}
	})
	t.Run("Canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Put(ctx, good, strings.NewReader("content")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Put on canceled context = %v", err)
		}
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestDiskEmptyBlob(t *testing.T) {
	s, _ := newDisk(t, blobstore.WithMaxBytes(10))
	if m := missing(t, s, digest.Empty); len(m) != 0 {
		t.Fatalf("empty blob missing: %v", m)
	}
	if got, err := get(t, s, digest.Empty, 0); err != nil || got != "" {
		t.Fatalf("Get(empty) = %q, %v", got, err)
	}
	p, err := s.Path(context.Background(), digest.Empty)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(p); err != nil || info.Size() != 0 {
		t.Fatalf("empty blob file: %v %v", info, err)
	}
	put(t, s, "")
	if s.Used() != 0 {
		t.Fatalf("Used = %d after storing the empty blob", s.Used())
	}
}

func TestDiskReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := blobstore.NewDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := put(t, s, "persistent")
	// Simulate a crash in the middle of a write and a stray file.
	if err := os.WriteFile(filepath.Join(dir, "tmp", "put-123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, d.Hash[:2], "not-a-hash"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := blobstore.NewDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := get(t, s2, d, 0); err != nil || got != "persistent" {
		t.Fatalf("after reopen Get = %q, %v", got, err)
	}
	if n := tmpEntries(t, dir); n != 0 {
		t.Fatalf("%d leftovers in tmp/ after reopen", n)
	}
	if s2.Used() != d.Size {
		t.Fatalf("Used = %d, want %d", s2.Used(), d.Size)
	}
}

func TestDiskEviction(t *testing.T) {
	ctx := context.Background()
	t.Run("LeastRecentlyUsedFirst", func(t *testing.T) {
		s, _ := newDisk(t, blobstore.WithMaxBytes(30))
		a, b := put(t, s, "aaaaaaaaaa"), put(t, s, "bbbbbbbbbb")
		put(t, s, "cccccccccc")
		if _, err := get(t, s, a, 0); err != nil { // a is now more recent than b
			t.Fatal(err)
		}
		put(t, s, "dddddddddd")
		if m := missing(t, s, a, b); len(m) != 1 || m[0] != b {
			t.Fatalf("missing = %v, want only b (%v)", m, b)
		}
		if s.Used() != 30 {
			t.Fatalf("Used = %d, want 30", s.Used())
		}
	})
	t.Run("PinnedNeverEvicted", func(t *testing.T) {
		s, _ := newDisk(t, blobstore.WithMaxBytes(20))
		a, b := put(t, s, "aaaaaaaaaa"), put(t, s, "bbbbbbbbbb")
		release, err := s.Pin(ctx, []digest.Digest{a, a, b})
		if err != nil {
			t.Fatal(err)
		}
		c := digest.OfBytes([]byte("cccccccccc"))
		if err := s.Put(ctx, c, strings.NewReader("cccccccccc")); !errors.Is(err, blobstore.ErrFull) {
			t.Fatalf("Put with everything pinned = %v, want ErrFull", err)
		}
		if m := missing(t, s, a, b); len(m) != 0 {
			t.Fatalf("pinned blobs evicted: %v", m)
		}
		release()
		release() // idempotent
		put(t, s, "cccccccccc")
		if m := missing(t, s, a, b); len(m) != 1 {
			t.Fatalf("after release, missing = %v, want one evicted", m)
		}
	})
	t.Run("PinCounts", func(t *testing.T) {
		s, _ := newDisk(t, blobstore.WithMaxBytes(10))
		a := put(t, s, "aaaaaaaaaa")
		r1, err := s.Pin(ctx, []digest.Digest{a})
		if err != nil {
			t.Fatal(err)
		}
		r2, err := s.Pin(ctx, []digest.Digest{a})
		if err != nil {
			t.Fatal(err)
		}
		r1()
		b := digest.OfBytes([]byte("bbbbbbbbbb"))
		if err := s.Put(ctx, b, strings.NewReader("bbbbbbbbbb")); !errors.Is(err, blobstore.ErrFull) {
			t.Fatalf("Put while a is pinned once more = %v, want ErrFull", err)
		}
		r2()
		put(t, s, "bbbbbbbbbb")
		if m := missing(t, s, a); len(m) != 1 {
			t.Fatal("a should have been evicted after both releases")
		}
	})
	t.Run("PinMissing", func(t *testing.T) {
		s, _ := newDisk(t)
		a := put(t, s, "aaaaaaaaaa")
		absent := digest.OfBytes([]byte("nope"))
		if _, err := s.Pin(ctx, []digest.Digest{a, absent}); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("Pin(absent) = %v, want ErrNotFound", err)
		}
	})
	t.Run("BoundOnReopen", func(t *testing.T) {
		dir := t.TempDir()
		s, _ := blobstore.NewDisk(dir)
		put(t, s, "aaaaaaaaaa")
		put(t, s, "bbbbbbbbbb")
		s2, err := blobstore.NewDisk(dir, blobstore.WithMaxBytes(15))
		if err != nil {
			t.Fatal(err)
		}
		if s2.Used() != 10 {
			t.Fatalf("Used after reopening with a smaller bound = %d, want 10", s2.Used())
		}
	})
}

func TestDiskConcurrentPuts(t *testing.T) {
	s, dir := newDisk(t)
	content := strings.Repeat("concurrent ", 10000)
	d := digest.OfBytes([]byte(content))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Put(context.Background(), d, strings.NewReader(content))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, err := get(t, s, d, 0); err != nil || got != content {
		t.Fatalf("Get after concurrent Puts: %v", err)
	}
	if s.Used() != d.Size || tmpEntries(t, dir) != 0 {
		t.Fatalf("Used = %d (want %d), tmp entries %d", s.Used(), d.Size, tmpEntries(t, dir))
	}
}

func TestDiskPutFile(t *testing.T) {
	ctx := context.Background()
	s, dir := newDisk(t)
	src := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("Moves", func(t *testing.T) {
		p := write("out", "output file")
		d := digest.OfBytes([]byte("output file"))
		if err := s.PutFile(ctx, d, p); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("source still exists: %v", err)
		}
		if got, err := get(t, s, d, 0); err != nil || got != "output file" {
			t.Fatalf("Get = %q, %v", got, err)
		}
		info, _ := os.Stat(blobstore.BlobPath(dir, d))
		if info.Mode().Perm() != 0o444 {
			t.Fatalf("mode %v, want 0444", info.Mode().Perm())
		}
	})
	t.Run("Mismatch", func(t *testing.T) {
		p := write("bad", "not what it claims")
		d := digest.OfBytes([]byte("something else"))
		if err := s.PutFile(ctx, d, p); !errors.Is(err, blobstore.ErrDigestMismatch) {
			t.Fatalf("PutFile = %v, want ErrDigestMismatch", err)
		}
		if m := missing(t, s, d); len(m) != 1 || tmpEntries(t, dir) != 0 {
			t.Fatal("mismatching file left something behind")
		}
	})
	t.Run("Symlink", func(t *testing.T) {
		target := write("target", "secret")
		p := filepath.Join(src, "link")
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		d := digest.OfBytes([]byte("secret"))
		if err := s.PutFile(ctx, d, p); err == nil {
			t.Fatal("PutFile of a symlink succeeded")
		}
		if m := missing(t, s, d); len(m) != 1 {
			t.Fatal("symlink was stored")
		}
	})
	t.Run("AlreadyPresent", func(t *testing.T) {
		d := put(t, s, "twice")
		p := write("twice", "twice")
		if err := s.PutFile(ctx, d, p); err != nil {
			t.Fatal(err)
		}
		if tmpEntries(t, dir) != 0 {
			t.Fatal("tmp not cleaned")
		}
	})
}

func TestDiskOptions(t *testing.T) {
	for _, opt := range []blobstore.DiskOption{blobstore.WithMaxBytes(-1), blobstore.WithMaxBlobBytes(0)} {
		if _, err := blobstore.NewDisk(t.TempDir(), opt); err == nil {
			t.Errorf("bad option accepted")
		}
	}
}

func TestMemory(t *testing.T) {
	s := blobstore.NewMemory()
	d := put(t, s, "memory")
	if got, err := get(t, s, d, 2); err != nil || got != "mory" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	bad := digest.OfBytes([]byte("x"))
	if err := s.Put(context.Background(), bad, strings.NewReader("y")); !errors.Is(err, blobstore.ErrDigestMismatch) {
		t.Fatalf("Put mismatch = %v", err)
	}
	if m := missing(t, s, d, bad, digest.Empty); len(m) != 1 || m[0] != bad {
		t.Fatalf("FindMissing = %v", m)
	}
	s.Delete(d)
	if _, err := get(t, s, d, 0); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Get after Delete = %v", err)
	}
}

func ExampleBlobPath() {
	fmt.Println(blobstore.BlobPath("/data/cas", digest.OfBytes([]byte("hi"))))
	// Output: /data/cas/8f/8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4
}

func TestDiskDelete(t *testing.T) {
	ctx := context.Background()
	s, dir := newDisk(t)
	d := put(t, s, "doomed")
	release, _ := s.Pin(ctx, []digest.Digest{d})
	if err := s.Delete(ctx, d); err == nil {
		t.Fatal("Delete of a pinned blob succeeded")
	}
	release()
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if m := missing(t, s, d); len(m) != 1 || s.Used() != 0 {
		t.Fatal("deleted blob still indexed")
	}
	if _, err := os.Stat(blobstore.BlobPath(dir, d)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("deleted blob's file remains")
	}
}

func TestDiskWithoutFsync(t *testing.T) {
	dir := t.TempDir()
	s, err := blobstore.NewDisk(dir, blobstore.WithoutFsyncUnsafe())
	if err != nil {
		t.Fatal(err)
	}
	d := put(t, s, "unsynced")
	s2, err := blobstore.NewDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := get(t, s2, d, 0); err != nil || got != "unsynced" {
		t.Fatalf("Get after reopen = %q, %v", got, err)
	}
}

func TestDiskPeriodicSync(t *testing.T) {
	dir := t.TempDir()
	s, err := blobstore.NewDisk(dir, blobstore.WithPeriodicSync(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	good := put(t, s, "durable")
	// A checkpoint happens within an interval plus the time syncfs takes.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "synced")); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no checkpoint: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A power loss after the checkpoint left a published blob torn: its
	// name is right, its content is not.
	torn := digest.OfBytes([]byte("written after the checkpoint"))
	os.MkdirAll(filepath.Join(dir, torn.Hash[:2]), 0o755)
	if err := os.WriteFile(blobstore.BlobPath(dir, torn), make([]byte, torn.Size), 0o444); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the clock slack, so good is trusted
	s2, err := blobstore.NewDisk(dir, blobstore.WithPeriodicSync(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if m := missing(t, s2, good, torn); len(m) != 1 || m[0] != torn {
		t.Fatalf("after reopen missing = %v; want only the torn blob", m)
	}
	if _, err := os.Stat(blobstore.BlobPath(dir, torn)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("torn blob's file was not deleted")
	}
	if _, err := blobstore.NewDisk(t.TempDir(), blobstore.WithPeriodicSync(0)); err == nil {
		t.Fatal("WithPeriodicSync(0) accepted")
	}
}
