package tenant_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/builder/tenant"
)

var tokA = tenant.HashToken("a").String()

const full = `
workers: {production: 2, development: 1}
tenants:
  - name: payments
    instance_names: [payments]
    tokens: ["TOKA"]
    client_cert_identities: []
    ring: sensitive
    sandbox: namespaces
    action_cache_writes: false
    quotas: {cas_bytes: 20GiB, concurrent_actions: 8, max_action_timeout: 15m, max_output_bytes: 1GiB}
    source: {repository: /srv/git/payments.git, protected_branch: main}
  - name: web
    instance_names: [web, web/ci]
    client_cert_identities: ["spiffe://example.org/web"]
    ring: hardened
    sandbox: gvisor
    action_cache_writes: true
`

func TestParseFull(t *testing.T) {
	cfg, err := tenant.Parse("t.yaml", []byte(strings.ReplaceAll(full, "TOKA", tokA)))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Tenant("payments")
	if p == nil || p.Quotas.CASBytes != 20<<30 || p.Quotas.MaxActionTimeout != 15*time.Minute || p.Source.ProtectedBranch != "main" {
		t.Errorf("payments parsed as %+v", p)
	}
	w := cfg.Tenant("web")
	if w.Quotas != tenant.DefaultQuotas || w.Sandbox != tenant.GVisor || len(w.InstanceNames) != 2 {
		t.Errorf("web parsed as %+v", w)
	}
	if got := cfg.WorkerCounts(); got[tenant.ProductionPool] != 2 || got[tenant.DevelopmentPool] != 1 {
		t.Errorf("workers %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	base := "tenants:\n  - name: a\n    instance_names: [a]\n    tokens: [\"" + tokA + "\"]\n"
	for _, tc := range []struct {
		name, yaml, wantKey string
		wantLine            int
	}{
		{"UnknownTop", "tenant:\n  - name: a\n", "tenant", 1},
		{"UnknownTenantKey", base + "    rings: sensitive\n", "tenants[0].rings", 5},
		{"BadRing", base + "    ring: secret\n", "tenants[0].ring", 5},
		{"BadSandbox", base + "    sandbox: docker\n", "tenants[0].sandbox", 5},
		{"BadSize", base + "    quotas: {cas_bytes: 20GB2}\n", "tenants[0].quotas.cas_bytes", 5},
		{"BadDuration", base + "    quotas: {max_action_timeout: forever}\n", "tenants[0].quotas.max_action_timeout", 5},
		{"BadToken", "tenants:\n  - name: a\n    instance_names: [a]\n    tokens: [\"secret\"]\n", "tenants[0].tokens[0]", 4},
		{"NoCredentials", "tenants:\n  - name: a\n    instance_names: [a]\n", "tenants[0].tokens", 2},
		{"MissingName", "tenants:\n  - instance_names: [a]\n    tokens: [\"" + tokA + "\"]\n", "tenants[0].name", 2},
		{"BadBool", base + "    action_cache_writes: yes\n", "tenants[0].action_cache_writes", 5},
		{"ReservedInstance", "tenants:\n  - name: a\n    instance_names: [blobs]\n    tokens: [\"" + tokA + "\"]\n", "tenants[0].instance_names[0]", 3},
		{"HardenedUnverifiable", base + "    ring: hardened\n    action_cache_writes: true\n", "tenants[0].ring", 2},
		{"DuplicateInstance", base + "  - name: b\n    instance_names: [a]\n    tokens: [\"" + tenant.HashToken("b").String() + "\"]\n", "instance_names", 5},
		{"DuplicateKey", base + "    ring: sensitive\n    ring: hardened\n", "tenants[0].ring", 6},
		{"WorkersMissingPool", "workers: {production: 1}\n" + base + "    ring: unhardened\n", "workers", 3},
		{"Empty", "", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tenant.Parse("t.yaml", []byte(tc.yaml))
			var ce *tenant.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *tenant.Error", err)
			}
			if ce.Key != tc.wantKey || ce.Line != tc.wantLine {
				t.Errorf("got key %q line %d (%v), want key %q line %d", ce.Key, ce.Line, err, tc.wantKey, tc.wantLine)
			}
		})
	}
}

func TestRingPools(t *testing.T) {
	for ring, want := range map[tenant.Ring]string{
		tenant.Foundational: "[foundational]", tenant.Sensitive: "[production]",
		tenant.Hardened: "[production development]", tenant.Unhardened: "[development]",
	} {
		if got := strings.ReplaceAll(strings.Trim(strings.Join(poolsOf(ring), " "), " "), "  ", " "); "["+got+"]" != want {
			t.Errorf("%s: pools %s, want %s", ring, got, want)
		}
	}
}

func poolsOf(r tenant.Ring) []string {
	var out []string
	for _, p := range r.Pools() {
		out = append(out, string(p))
	}
	return out
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(strings.ReplaceAll(full, "TOKA", tokA)))
	f.Add([]byte("tenants: []"))
	f.Add([]byte("tenants:\n  - name: a\n    instance_names: [a]\n    tokens: [x]\n"))
	f.Add([]byte("workers: {production: -1}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := tenant.Parse("f.yaml", b)
		if err != nil {
			if cfg != nil {
				t.Fatal("a config with an error")
			}
			return
		}
		for _, tn := range cfg.Tenants {
			if tn.Name == "" || len(tn.InstanceNames) == 0 || (len(tn.Tokens) == 0 && len(tn.ClientCertIdentities) == 0) {
				t.Fatalf("accepted an incomplete tenant %+v", tn)
			}
		}
	})
}

func FuzzParseTokenHash(f *testing.F) {
	f.Add(tokA)
	f.Add("sha256:")
	f.Add("sha256:ZZ")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := tenant.ParseTokenHash(s)
		if err == nil && h.String() != s {
			t.Fatalf("%q round-trips to %q", s, h.String())
		}
	})
}
