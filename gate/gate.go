// Package gate ties the deploy gate together: it verifies an image's signed
// manifest (gate/verify, with keys from gate/trust or a given key), evaluates
// the identity's policy (gate/policy), records the decision (gate/audit), and
// re-checks admitted workloads later (Recheck). The admission webhook
// (gate/webhook) and the CLI are thin layers over it.
package gate

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hallmark-build/hallmark/gate/audit"
	"github.com/hallmark-build/hallmark/gate/policy"
	"github.com/hallmark-build/hallmark/gate/verify"
)

// Request asks whether image may run as identity.
type Request struct {
	Identity      string
	Image         string
	Justification string // break-glass justification, if any
	Workload      string // for the audit record
	User          string
	RequestUID    string
}

// Gate decides requests. It is safe for concurrent use.
type Gate struct {
	verifier *verify.Verifier
	log      *audit.Log
	now      func() time.Time
	ttl      time.Duration

	mu     sync.RWMutex
	policy *policy.Policy
	cache  map[string]cached // by image reference
}

type cached struct {
	facts policy.Facts
	at    time.Time
}

// Option configures a Gate.
type Option func(*Gate)

// WithAudit records every decision in l (default: none).
func WithAudit(l *audit.Log) Option { return func(g *Gate) { g.log = l } }

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(g *Gate) { g.now = now } }

// WithCacheTTL sets how long a verified image's facts are reused (default
// 5 minutes; 0 disables the cache). Only digest references and successful
// verifications are cached; a tag is always resolved again.
func WithCacheTTL(d time.Duration) Option { return func(g *Gate) { g.ttl = d } }

// New makes a gate.
func New(v *verify.Verifier, p *policy.Policy, opts ...Option) (*Gate, error) {
	if v == nil || p == nil {
		return nil, fmt.Errorf("gate: a verifier and a policy are required")
	}
	g := &Gate{verifier: v, policy: p, now: time.Now, ttl: 5 * time.Minute, cache: map[string]cached{}}
	for _, o := range opts {
		o(g)
	}
	return g, nil
}

// SetPolicy replaces the policy (e.g. after the file changed).
func (g *Gate) SetPolicy(p *policy.Policy) {
	g.mu.Lock()
	g.policy = p
	g.mu.Unlock()
}

// Policy returns the current policy.
func (g *Gate) Policy() *policy.Policy {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.policy
}

// Facts verifies image (through the cache).
func (g *Gate) Facts(ctx context.Context, image string) (policy.Facts, error) {
	now := g.now()
	d, err := g.verifier.Resolve(ctx, image)
	if err != nil {
		return policy.Facts{Image: image}, err
	}
	key := d.String()
	if g.ttl > 0 {
		g.mu.RLock()
		c, ok := g.cache[key]
		g.mu.RUnlock()
		if ok && now.Sub(c.at) < g.ttl {
			f := c.facts
			f.Image = image
			return f, nil
		}
	}
	f, err := g.verifier.Verify(ctx, key)
	f.Image = image
	if err != nil {
		return f, err
	}
	if g.ttl > 0 && len(f.VerifyErrors) == 0 {
		g.mu.Lock()
		g.cache[key] = cached{f, now}
		g.mu.Unlock()
	}
	return f, nil
}

// Check decides one request and records it. Infrastructure errors (registry
// unreachable, TUF refresh failed) become a verification violation, so the
// decision is always well defined and fails closed in enforce mode.
func (g *Gate) Check(ctx context.Context, r Request) policy.Decision {
	f, err := g.Facts(ctx, r.Image)
	if err != nil {
		f.VerifyErrors = append(f.VerifyErrors, err.Error())
	}
	f.Identity = r.Identity
	f.Justification = r.Justification
	d := policy.Evaluate(g.Policy(), f, g.now())
	return g.record(r, d, f, audit.KindAdmission)
}

func (g *Gate) record(r Request, d policy.Decision, f policy.Facts, kind string) policy.Decision {
	if g.log == nil {
		return d
	}
	if d.Review {
		kind = audit.KindBreakGlass
	}
	// An audit failure must not go unnoticed; it is reported through the
	// decision's notes rather than failing the deploy.
	if err := g.log.Append(audit.Record{Time: g.now().UTC(), Kind: kind, Workload: r.Workload, RequestUID: r.RequestUID, User: r.User, Decision: d, Facts: f}); err != nil {
		d.Notes = append(d.Notes, policy.Reason{Code: "AUDIT_FAILED", Message: err.Error()})
		if d.Review {
			// A break-glass admission that cannot be recorded is not granted.
			d.Allow = false
			d.Violations = append(d.Violations, policy.Reason{Code: "AUDIT_FAILED", Message: "break-glass use could not be recorded: " + err.Error()})
		}
	}
	return d
}

// Finding is a previously admitted workload image that no longer complies.
type Finding struct {
	Workload string          `json:"workload"`
	Identity string          `json:"identity"`
	Image    string          `json:"image"`
	Admitted time.Time       `json:"admitted"`
	Decision policy.Decision `json:"decision"`
}

// Recheck re-evaluates every workload image admitted in the audit log at
// path against the current policy and trust, without the cache, and returns
// those that would now be denied. Each (workload, identity, image) is checked
// once, at its latest admission.
func (g *Gate) Recheck(ctx context.Context, path string) ([]Finding, error) {
	type key struct{ workload, identity, image string }
	latest := map[key]audit.Record{}
	var order []key
	err := audit.Read(path, func(r audit.Record) error {
		if r.Kind == audit.KindRecheck || !r.Decision.Allow {
			return nil
		}
		image := r.Facts.ImageDigest
		if image == "" || r.Facts.Image == "" {
			image = r.Decision.Image
		} else {
			// Re-check exactly what was admitted: the digest.
			image = digestRef(r.Facts.Image, r.Facts.ImageDigest)
		}
		k := key{r.Workload, r.Decision.Identity, image}
		if _, ok := latest[k]; !ok {
			order = append(order, k)
		}
		latest[k] = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, k := range order {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		r := latest[k]
		f, err := g.verifier.Verify(ctx, k.image)
		if err != nil {
			f.VerifyErrors = append(f.VerifyErrors, err.Error())
		}
		f.Identity = k.identity
		f.Justification = r.Facts.Justification
		d := policy.Evaluate(g.Policy(), f, g.now())
		if len(d.Violations) == 0 {
			continue
		}
		d = g.record(Request{Identity: k.identity, Image: k.image, Workload: k.workload}, d, f, audit.KindRecheck)
		out = append(out, Finding{Workload: k.workload, Identity: k.identity, Image: k.image, Admitted: r.Time, Decision: d})
	}
	return out, nil
}

// digestRef turns "reg/repo:tag" and "sha256:..." into "reg/repo@sha256:...".
func digestRef(ref, digest string) string {
	repo := ref
	if i := lastIndex(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	if i := lastIndex(repo, ':'); i >= 0 && lastIndex(repo, '/') < i {
		repo = repo[:i]
	}
	return repo + "@" + digest
}

func lastIndex(s string, c byte) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == c {
			return i
		}
	}
	return -1
}
