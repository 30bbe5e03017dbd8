package trust_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/gate/trust"
	"github.com/hallmark-build/hallmark/signer/publish"
	"github.com/hallmark-build/hallmark/signer/publish/publishtest"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	repo   *publish.TUFRepo
	srv    *httptest.Server
	clk    *clock
	client *trust.Client
	key    *publishtest.Key
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clk := &clock{t: time.Now().UTC()}
	repo, err := publish.InitTUF(t.TempDir(), publish.TUFInitOptions{RootKeys: 3, RootThreshold: 2}, clk.now())
	if err != nil {
		t.Fatal(err)
	}
	key := publishtest.NewKey(t)
	if err := repo.AddSignerKey("prod-signer", key.PublicPEM(), clk.now()); err != nil {
		t.Fatal(err)
	}
	if err := repo.SetBuilders([]string{publishtest.Builder}, clk.now()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(repo.Handler())
	t.Cleanup(srv.Close)
	root, err := os.ReadFile(filepath.Join(repo.Dir(), "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := trust.New(root, srv.URL, t.TempDir(), trust.WithClock(clk.now), trust.WithRefreshInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{repo, srv, clk, c, key}
}

func (f *fixture) file(t *testing.T, name string) []byte {
	b, err := os.ReadFile(filepath.Join(f.repo.Dir(), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) put(t *testing.T, name string, b []byte) {
	if err := os.WriteFile(filepath.Join(f.repo.Dir(), name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTrust(t *testing.T) {
	ctx := context.Background()
	t.Run("KeysAndBuilders", func(t *testing.T) {
		f := newFixture(t)
		ts, err := f.client.Trust(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ts.Verifiers) != 1 || ts.Verifiers[0].KeyID() != f.key.KeyID() || len(ts.Builders) != 1 || ts.Builders[0] != publishtest.Builder {
			t.Fatalf("trust set: %d keys, builders %v", len(ts.Verifiers), ts.Builders)
		}
		if f.client.KeyNames()[f.key.KeyID()] != "prod-signer" {
			t.Fatalf("key names %v", f.client.KeyNames())
		}
	})
	t.Run("RevokedKeyStopsBeingTrusted", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.client.Trust(ctx); err != nil {
			t.Fatal(err)
		}
		if err := f.repo.RevokeSignerKey("prod-signer", f.clk.now()); err != nil {
			t.Fatal(err)
		}
		ts, err := f.client.Trust(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ts.Verifiers) != 0 {
			t.Fatalf("revoked key still trusted")
		}
	})
	t.Run("FreezeAttackExpiredTimestamp", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.client.Trust(ctx); err != nil {
			t.Fatal(err)
		}
		// The repository (or an attacker in between) keeps serving the same
		// metadata; a day later the timestamp has expired.
		f.clk.add(25 * time.Hour)
		_, err := f.client.Trust(ctx)
		if !errors.Is(err, trust.ErrTUF) || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("Trust after the timestamp expired = %v, want an expiry error", err)
		}
		// After the repository refreshes, trust resumes.
		if err := f.repo.Refresh(f.clk.now()); err != nil {
			t.Fatal(err)
		}
		if _, err := f.client.Trust(ctx); err != nil {
			t.Fatalf("after repository refresh: %v", err)
		}
	})
	t.Run("RolledBackTimestampAndSnapshot", func(t *testing.T) {
		f := newFixture(t)
		oldTS, oldSnap := f.file(t, "timestamp.json"), f.file(t, "snapshot.json")
		if err := f.repo.Refresh(f.clk.now()); err != nil {
			t.Fatal(err)
		}
		if _, err := f.client.Trust(ctx); err != nil {
			t.Fatal(err)
		}
		f.put(t, "timestamp.json", oldTS)
		f.put(t, "snapshot.json", oldSnap)
		_, err := f.client.Trust(ctx)
		if !errors.Is(err, trust.ErrTUF) || !strings.Contains(err.Error(), "version") {
			t.Fatalf("Trust with rolled-back metadata = %v, want a version error", err)
		}
	})
	t.Run("RolledBackSnapshotOnly", func(t *testing.T) {
		f := newFixture(t)
		oldSnap := f.file(t, "snapshot.json")
		if err := f.repo.Refresh(f.clk.now()); err != nil {
			t.Fatal(err)
		}
		f.put(t, "snapshot.json", oldSnap)
		if _, err := f.client.Trust(ctx); !errors.Is(err, trust.ErrTUF) {
			t.Fatalf("Trust with a snapshot older than the timestamp names = %v, want refused", err)
		}
	})
	t.Run("WronglySignedTargets", func(t *testing.T) {
		f := newFixture(t)
		// Edit targets.json without re-signing: add a key of the attacker's.
		b := f.file(t, "targets.json")
		f.put(t, "targets.json", []byte(strings.Replace(string(b), `"builders.json"`, `"builders2.json"`, 1)))
		if _, err := f.client.Trust(ctx); !errors.Is(err, trust.ErrTUF) {
			t.Fatalf("Trust with tampered targets = %v, want refused", err)
		}
	})
	t.Run("OtherRepositorysRoot", func(t *testing.T) {
		f := newFixture(t)
		other, err := publish.InitTUF(t.TempDir(), publish.TUFInitOptions{}, f.clk.now())
		if err != nil {
			t.Fatal(err)
		}
		root, _ := other.RootJSON()
		c, err := trust.New(root, f.srv.URL, t.TempDir(), trust.WithClock(f.clk.now))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Trust(ctx); !errors.Is(err, trust.ErrTUF) {
			t.Fatalf("Trust pinned to another repository's root = %v, want refused", err)
		}
	})
	t.Run("TamperedTargetFile", func(t *testing.T) {
		f := newFixture(t)
		attacker := publishtest.NewKey(t)
		f.put(t, "targets/signers/prod-signer.pub", attacker.PublicPEM())
		if _, err := f.client.Trust(ctx); !errors.Is(err, trust.ErrTUF) {
			t.Fatalf("Trust with a swapped key file = %v, want refused", err)
		}
	})
}
