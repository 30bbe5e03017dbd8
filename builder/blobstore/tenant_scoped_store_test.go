package blobstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

func openScopes(t *testing.T, casDir, dir string) (*blobstore.TenantScopedStore, *blobstore.TenantScopedStore) {
	t.Helper()
	ctx := context.Background()
	disk, err := blobstore.NewDisk(casDir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := blobstore.NewTenantScopes(disk, dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Open(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Open(ctx, "b", 100)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestTenantScopedStore(t *testing.T) {
	ctx := context.Background()
	casDir, dir := t.TempDir(), t.TempDir()
	a, b := openScopes(t, casDir, dir)
	blob := []byte("alpha only")
	d := digest.OfBytes(blob)
	if err := a.Put(ctx, d, bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	t.Run("FindMissingOwnOnly", func(t *testing.T) {
		if m, _ := b.FindMissing(ctx, []digest.Digest{d}); len(m) != 1 {
			t.Error("b sees a's blob")
		}
		if m, _ := a.FindMissing(ctx, []digest.Digest{d}); len(m) != 0 {
			t.Error("a does not see its blob")
		}
	})
	t.Run("GetAndPathOwnOnly", func(t *testing.T) {
		if _, err := b.Get(ctx, d, 0); !errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("b Get: %v", err)
		}
		if _, err := b.Path(ctx, d); !errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("b Path: %v", err)
		}
		if _, err := b.Pin(ctx, []digest.Digest{d}); !errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("b Pin: %v", err)
		}
	})
	t.Run("PutOfPresentBlobVerifiesContent", func(t *testing.T) {
		wrong := []byte("alpha onlX")
		if err := b.Put(ctx, d, bytes.NewReader(wrong)); !errors.Is(err, blobstore.ErrDigestMismatch) {
			t.Errorf("b claiming a's digest with other bytes: %v", err)
		}
		if m, _ := b.FindMissing(ctx, []digest.Digest{d}); len(m) != 1 {
			t.Error("a failed Put joined b's namespace")
		}
		if err := b.Put(ctx, d, bytes.NewReader(blob)); err != nil {
			t.Fatal(err)
		}
		r, err := b.Get(ctx, d, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(got, blob) {
			t.Errorf("b reads %q", got)
		}
	})
	t.Run("EvictionPerTenant", func(t *testing.T) {
		var first digest.Digest
		for i := 0; i < 5; i++ {
			c := bytes.Repeat([]byte{byte('0' + i)}, 40)
			cd := digest.OfBytes(c)
			if i == 0 {
				first = cd
			}
			if err := b.Put(ctx, cd, bytes.NewReader(c)); err != nil {
				t.Fatal(err)
			}
		}
		if b.Used() > 100 {
			t.Errorf("b uses %d bytes, quota 100", b.Used())
		}
		if m, _ := b.FindMissing(ctx, []digest.Digest{first}); len(m) != 1 {
			t.Error("b's oldest blob not evicted")
		}
		if m, _ := a.FindMissing(ctx, []digest.Digest{d}); len(m) != 0 {
			t.Error("b's eviction removed a's blob")
		}
		huge := bytes.Repeat([]byte("x"), 101)
		err := b.Put(ctx, digest.OfBytes(huge), bytes.NewReader(huge))
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("blob over the whole quota: %v", err)
		}
	})
	t.Run("MembershipPersists", func(t *testing.T) {
		a.Close()
		b.Close()
		a2, b2 := openScopes(t, casDir, dir)
		if m, _ := a2.FindMissing(ctx, []digest.Digest{d}); len(m) != 0 {
			t.Error("a's membership lost on reopen")
		}
		if m, _ := b2.FindMissing(ctx, []digest.Digest{digest.OfBytes(bytes.Repeat([]byte("0"), 40))}); len(m) != 1 {
			t.Error("b's evicted blob came back on reopen")
		}
	})
}
