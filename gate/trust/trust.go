// Package trust gives the gate its trusted keys through TUF.
//
// A Client starts from a pinned root.json and updates with go-tuf v2's
// updater: expired, rolled-back or wrongly signed metadata is refused, and a
// frozen repository (a stale timestamp) is detected because the timestamp
// expires. Signer public keys are the targets "signers/<name>.pub"; the
// target "builders.json" lists trusted builder ids. A key removed from the
// targets stops being trusted at the next refresh.
package trust

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/hallmark-build/hallmark/gate/verify"
)

const (
	signerPrefix   = "signers/"
	buildersTarget = "builders.json"
)

// ErrTUF is the category of every refresh failure.
var ErrTUF = errors.New("TUF update failed")

// Client is a TUF-backed verify.TrustSource. It is safe for concurrent use.
type Client struct {
	pinned   []byte
	url      string
	cache    string
	rt       http.RoundTripper
	now      func() time.Time
	interval time.Duration

	mu      sync.Mutex
	current *verify.TrustSet
	fetched time.Time
	expires time.Time // the trusted timestamp's expiry
	keys    map[string]string
}

// Option configures a Client.
type Option func(*Client)

// WithTransport sets the HTTP transport for metadata and targets.
func WithTransport(rt http.RoundTripper) Option { return func(c *Client) { c.rt = rt } }

// WithClock sets the clock (default time.Now); expiries are checked against it.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// WithRefreshInterval sets how long a refreshed trust set is reused before
// the next refresh (default 1 minute; 0 refreshes on every call). It is never
// reused past the timestamp's expiry.
func WithRefreshInterval(d time.Duration) Option { return func(c *Client) { c.interval = d } }

// New makes a client for the repository at metadataURL (targets under
// metadataURL/targets/), pinned to rootJSON, caching trusted metadata in
// cacheDir. A root already cached there (after rotations) is used instead of
// the pinned one, and the cached timestamp and snapshot give rollback
// protection across restarts.
func New(rootJSON []byte, metadataURL, cacheDir string, opts ...Option) (*Client, error) {
	if _, err := metadata.Root().FromBytes(rootJSON); err != nil {
		return nil, fmt.Errorf("trust: pinned root: %w", err)
	}
	if _, err := url.Parse(metadataURL); err != nil || metadataURL == "" {
		return nil, fmt.Errorf("trust: metadata URL %q: %v", metadataURL, err)
	}
	c := &Client{pinned: rootJSON, url: metadataURL, cache: cacheDir, now: time.Now, interval: time.Minute}
	for _, o := range opts {
		o(c)
	}
	if err := os.MkdirAll(filepath.Join(cacheDir, "targets"), 0o700); err != nil {
		return nil, fmt.Errorf("trust: cache: %w", err)
	}
	return c, nil
}

// Trust implements verify.TrustSource: the last trust set if still fresh,
// else a new refresh. It fails closed: a failed refresh is an error, never
// a fallback to stale keys.
func (c *Client) Trust(ctx context.Context) (verify.TrustSet, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.current != nil && now.Sub(c.fetched) < c.interval && now.Before(c.expires) {
		return *c.current, nil
	}
	ts, err := c.refreshLocked(ctx)
	if err != nil {
		c.current = nil
		return verify.TrustSet{}, err
	}
	return ts, nil
}

// Refresh updates from the repository now.
func (c *Client) Refresh(ctx context.Context) (verify.TrustSet, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refreshLocked(ctx)
}

// KeyNames maps the key ids of the last trust set to their target names.
func (c *Client) KeyNames() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for k, v := range c.keys {
		out[k] = v
	}
	return out
}

func (c *Client) refreshLocked(ctx context.Context) (verify.TrustSet, error) {
	if err := ctx.Err(); err != nil {
		return verify.TrustSet{}, err
	}
	root := c.pinned
	mdDir := filepath.Join(c.cache, "metadata")
	if b, err := os.ReadFile(filepath.Join(mdDir, "root.json")); err == nil {
		root = b
	}
	cfg, err := config.New(c.url, root)
	if err != nil {
		return verify.TrustSet{}, fmt.Errorf("%w: %v", ErrTUF, err)
	}
	cfg.LocalMetadataDir = mdDir
	cfg.LocalTargetsDir = filepath.Join(c.cache, "targets")
	if c.rt != nil {
		if err := cfg.SetDefaultFetcherTransport(c.rt); err != nil {
			return verify.TrustSet{}, fmt.Errorf("%w: %v", ErrTUF, err)
		}
	}
	up, err := updater.New(cfg)
	if err != nil {
		return verify.TrustSet{}, fmt.Errorf("%w: %v", ErrTUF, err)
	}
	now := c.now()
	up.UnsafeSetRefTime(now.UTC())
	if err := up.Refresh(); err != nil {
		return verify.TrustSet{}, fmt.Errorf("%w: %s: %v", ErrTUF, c.url, err)
	}
	var ts verify.TrustSet
	names := map[string]string{}
	targets := up.GetTopLevelTargets()
	paths := make([]string, 0, len(targets))
	for p := range targets {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		tf := targets[p]
		isKey := strings.HasPrefix(p, signerPrefix) && strings.HasSuffix(p, ".pub")
		if !isKey && p != buildersTarget {
			continue
		}
		_, data, err := up.FindCachedTarget(tf, "")
		if err != nil || data == nil {
			_, data, err = up.DownloadTarget(tf, "", "")
			if err != nil {
				return verify.TrustSet{}, fmt.Errorf("%w: target %s: %v", ErrTUF, p, err)
			}
		}
		if p == buildersTarget {
			if err := json.Unmarshal(data, &ts.Builders); err != nil {
				return verify.TrustSet{}, fmt.Errorf("%w: target %s: %v", ErrTUF, p, err)
			}
			continue
		}
		v, err := verify.KeyFromPEM(data)
		if err != nil {
			return verify.TrustSet{}, fmt.Errorf("%w: target %s: %v", ErrTUF, p, err)
		}
		ts.Verifiers = append(ts.Verifiers, v)
		names[v.KeyID()] = strings.TrimSuffix(strings.TrimPrefix(p, signerPrefix), ".pub")
	}
	tm := up.GetTrustedMetadataSet()
	c.current = &ts
	c.fetched = now
	c.expires = tm.Timestamp.Signed.Expires
	c.keys = names
	return ts, nil
}

var _ verify.TrustSource = (*Client)(nil)
