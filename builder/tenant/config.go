// Package tenant holds the multi-tenant side of the builder farm: the
// configuration file (tenants, their credentials, rings, sandboxes and
// quotas, the local worker pools), authentication of every RPC, the
// tenant-aware instance Resolver, and admission of actions to worker pools.
//
// docs/tenancy.md is the reference for the file format and the semantics.
package tenant

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hallmark-build/hallmark/builder/reapi"
)

// Ring is a workload security ring: how much a tenant's builds are trusted
// and so which workers they may share.
type Ring string

// The rings a tenant can be in.
const (
	// Foundational tenants run only on foundational workers, one tenant per worker.
	Foundational Ring = "foundational"
	// Sensitive tenants run only on production workers.
	Sensitive Ring = "sensitive"
	// Hardened tenants run on production or development workers, preferring
	// production when it has a free slot. They must use gVisor or forbid
	// client ActionCache writes.
	Hardened Ring = "hardened"
	// Unhardened tenants run only on development workers.
	Unhardened Ring = "unhardened"
)

// Pool is a class of workers.
type Pool string

// The worker pools.
const (
	FoundationalPool Pool = "foundational"
	ProductionPool   Pool = "production"
	DevelopmentPool  Pool = "development"
)

// AllPools lists the pools in their canonical order.
var AllPools = []Pool{FoundationalPool, ProductionPool, DevelopmentPool}

// Pools returns the pools a ring may run on, preferred first.
func (r Ring) Pools() []Pool {
	switch r {
	case Foundational:
		return []Pool{FoundationalPool}
	case Sensitive:
		return []Pool{ProductionPool}
	case Hardened:
		return []Pool{ProductionPool, DevelopmentPool}
	case Unhardened:
		return []Pool{DevelopmentPool}
	}
	return nil
}

// Sandbox is the kind of sandbox a tenant's actions run in.
type Sandbox string

// The sandbox tiers.
const (
	Namespaces Sandbox = "namespaces" // bubblewrap: Linux namespaces
	GVisor     Sandbox = "gvisor"     // runsc: a user-space kernel
)

// Quotas bound what one tenant may use. Zero means the documented default
// was replaced by "no bound" only where the field says so.
type Quotas struct {
	// CASBytes bounds the bytes of the tenant's CAS namespace; its least
	// recently used blobs are evicted past it. Default 10GiB.
	CASBytes int64
	// ConcurrentActions bounds how many of the tenant's actions execute at
	// once; more wait in the queue, and a queue deeper than
	// QueueFactor*ConcurrentActions is refused. Default 8.
	ConcurrentActions int
	// MaxActionTimeout caps the timeout an action may ask for. Default 1h.
	MaxActionTimeout time.Duration
	// MaxOutputBytes bounds the total size of one action's outputs.
	// Default 4GiB.
	MaxOutputBytes int64
}

// QueueFactor times concurrent_actions is how many actions one tenant may
// have queued and executing before Execute answers RESOURCE_EXHAUSTED.
const QueueFactor = 1000

// DefaultQuotas are the quotas of a tenant that sets none.
var DefaultQuotas = Quotas{CASBytes: 10 << 30, ConcurrentActions: 8, MaxActionTimeout: time.Hour, MaxOutputBytes: 4 << 30}

// Source is where a tenant's sources live; only the signer uses it.
type Source struct {
	Repository      string
	ProtectedBranch string
}

// Tenant is one configured tenant.
type Tenant struct {
	Name                 string
	InstanceNames        []string
	Tokens               []TokenHash
	ClientCertIdentities []string
	Ring                 Ring    // default sensitive
	Sandbox              Sandbox // default namespaces
	ActionCacheWrites    bool    // default false
	Quotas               Quotas
	Source               Source
	// Line is where the tenant is defined in the file.
	Line int
}

// Config is a parsed, validated configuration file.
type Config struct {
	Tenants []*Tenant
	// Workers gives local worker counts per pool; nil means one worker for
	// each pool some tenant needs (and one per foundational tenant).
	Workers map[Pool]int
}

// TokenHash is the SHA-256 of a bearer token, as stored in the file
// ("sha256:<64 hex digits>").
type TokenHash [sha256.Size]byte

// HashToken returns the hash under which token is stored.
func HashToken(token string) TokenHash { return sha256.Sum256([]byte(token)) }

// String returns the "sha256:<hex>" form.
func (h TokenHash) String() string { return "sha256:" + hex.EncodeToString(h[:]) }

// ParseTokenHash reads "sha256:<64 lower-case hex digits>".
func ParseTokenHash(s string) (TokenHash, error) {
	var h TokenHash
	rest, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(rest) != 2*sha256.Size || strings.ToLower(rest) != rest {
		return h, errors.New(`a token must be stored as "sha256:<64 lower-case hex digits of sha256(token)>" (printf %s "$TOKEN" | sha256sum)`)
	}
	if _, err := hex.Decode(h[:], []byte(rest)); err != nil {
		return h, fmt.Errorf("token hash is not hex: %v", err)
	}
	return h, nil
}

// Error is a problem in the configuration file, at a key and line.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
}

var _ error = (*Error)(nil)

// Load reads and parses the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tenant config: %w", err)
	}
	return Parse(path, b)
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Parse parses and validates a configuration file; file names it in errors.
// Unknown keys, duplicate keys, wrong types and bad values are errors that
// name the key and its line.
func Parse(file string, data []byte) (*Config, error) {
	p := &parser{file: file}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, &Error{File: file, Line: 1, Msg: "empty file: a top-level mapping with a tenants: list is required"}
	} else if err != nil {
		line := yamlLine(err)
		if line == 0 {
			line = 1
		}
		return nil, &Error{File: file, Line: line, Msg: "not valid YAML: " + err.Error()}
	}
	if len(doc.Content) != 1 {
		return nil, &Error{File: file, Line: 1, Msg: "empty file: a top-level mapping with a tenants: list is required"}
	}
	cfg := &Config{}
	err := p.mapping(doc.Content[0], "", map[string]func(k, v *yaml.Node) error{
		"tenants": func(k, v *yaml.Node) error {
			if v.Kind != yaml.SequenceNode {
				return p.errf(v, "tenants", "must be a list of tenants")
			}
			for i, n := range v.Content {
				t, err := p.tenant(n, fmt.Sprintf("tenants[%d]", i))
				if err != nil {
					return err
				}
				cfg.Tenants = append(cfg.Tenants, t)
			}
			return nil
		},
		"workers": func(k, v *yaml.Node) error {
			cfg.Workers = map[Pool]int{}
			fields := map[string]func(k, v *yaml.Node) error{}
			for _, pool := range AllPools {
				pool := pool
				fields[string(pool)] = func(k, v *yaml.Node) error {
					n, err := p.integer(v, "workers."+string(pool))
					if err != nil {
						return err
					}
					if n < 0 || n > 1024 {
						return p.errf(v, "workers."+string(pool), "%d is not a worker count between 0 and 1024", n)
					}
					cfg.Workers[pool] = n
					return nil
				}
			}
			return p.mapping(v, "workers", fields)
		},
	}, "tenants")
	if err != nil {
		return nil, err
	}
	if err := p.validate(cfg, doc.Content[0]); err != nil {
		return nil, err
	}
	return cfg, nil
}

type parser struct{ file string }

func (p *parser) errf(n *yaml.Node, key, format string, args ...any) error {
	return &Error{File: p.file, Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

func yamlLine(err error) int {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return 0
	}
	// yaml.v3 syntax errors read "yaml: line N: ...".
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		j := i + 5
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if n, err := strconv.Atoi(s[i+5 : j]); err == nil {
			return n
		}
	}
	return 0
}

// mapping walks a mapping node, calling fields[key] for each key; unknown
// and duplicate keys are errors, and so are absent required keys.
func (p *parser) mapping(n *yaml.Node, prefix string, fields map[string]func(k, v *yaml.Node) error, required ...string) error {
	where := prefix
	if where == "" {
		where = "top level"
	}
	if n.Kind == yaml.AliasNode {
		return p.errf(n, prefix, "YAML aliases are not supported here")
	}
	if n.Kind != yaml.MappingNode {
		return p.errf(n, prefix, "%s must be a mapping (key: value)", where)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		full := key
		if prefix != "" {
			full = prefix + "." + key
		}
		if k.Kind != yaml.ScalarNode {
			return p.errf(k, prefix, "keys must be plain words")
		}
		if seen[key] {
			return p.errf(k, full, "key appears twice")
		}
		seen[key] = true
		f, ok := fields[key]
		if !ok {
			known := make([]string, 0, len(fields))
			for name := range fields {
				known = append(known, name)
			}
			sort.Strings(known)
			return p.errf(k, full, "unknown key (known keys in %s: %s)", where, strings.Join(known, ", "))
		}
		if v.Kind == yaml.AliasNode {
			return p.errf(v, full, "YAML aliases are not supported")
		}
		if err := f(k, v); err != nil {
			return err
		}
	}
	for _, r := range required {
		if !seen[r] {
			full := r
			if prefix != "" {
				full = prefix + "." + r
			}
			return p.errf(n, full, "required key is missing")
		}
	}
	return nil
}

func (p *parser) scalar(v *yaml.Node, key string) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return "", p.errf(v, key, "must be a single value")
	}
	return v.Value, nil
}

func (p *parser) str(v *yaml.Node, key string) (string, error) {
	s, err := p.scalar(v, key)
	if err != nil {
		return "", err
	}
	if v.Tag != "!!str" {
		return "", p.errf(v, key, "must be a string, not %q", s)
	}
	return s, nil
}

func (p *parser) strList(v *yaml.Node, key string) ([]string, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, p.errf(v, key, "must be a list, like [a, b]")
	}
	out := make([]string, 0, len(v.Content))
	for i, e := range v.Content {
		s, err := p.str(e, fmt.Sprintf("%s[%d]", key, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (p *parser) integer(v *yaml.Node, key string) (int, error) {
	s, err := p.scalar(v, key)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || v.Tag != "!!int" {
		return 0, p.errf(v, key, "%q is not a whole number", s)
	}
	return n, nil
}

func (p *parser) boolean(v *yaml.Node, key string) (bool, error) {
	s, err := p.scalar(v, key)
	if err != nil {
		return false, err
	}
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, p.errf(v, key, "%q is not true or false", s)
}

// ParseBytes reads sizes like 1024, 512MiB, 20GiB or 1TB.
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	num := s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (examples: 500MiB, 20GiB, 1TB)", s)
	}
	return n * mult, nil
}

func (p *parser) tenant(n *yaml.Node, at string) (*Tenant, error) {
	t := &Tenant{Ring: Sensitive, Sandbox: Namespaces, Quotas: DefaultQuotas, Line: n.Line}
	key := func(k string) string { return at + "." + k }
	err := p.mapping(n, at, map[string]func(k, v *yaml.Node) error{
		"name": func(k, v *yaml.Node) error {
			s, err := p.str(v, key("name"))
			if err != nil {
				return err
			}
			if !nameRE.MatchString(s) {
				return p.errf(v, key("name"), "%q is not a tenant name (lower-case letters, digits, - and _, at most 63, starting with a letter or digit)", s)
			}
			t.Name = s
			return nil
		},
		"instance_names": func(k, v *yaml.Node) error {
			names, err := p.strList(v, key("instance_names"))
			if err != nil {
				return err
			}
			if len(names) == 0 {
				return p.errf(v, key("instance_names"), "a tenant needs at least one instance name")
			}
			for i, name := range names {
				if err := reapi.CheckInstanceName(name); err != nil {
					return p.errf(v.Content[i], fmt.Sprintf("%s[%d]", key("instance_names"), i), "%v", err)
				}
			}
			t.InstanceNames = names
			return nil
		},
		"tokens": func(k, v *yaml.Node) error {
			toks, err := p.strList(v, key("tokens"))
			if err != nil {
				return err
			}
			for i, s := range toks {
				h, err := ParseTokenHash(s)
				if err != nil {
					return p.errf(v.Content[i], fmt.Sprintf("%s[%d]", key("tokens"), i), "%v", err)
				}
				t.Tokens = append(t.Tokens, h)
			}
			return nil
		},
		"client_cert_identities": func(k, v *yaml.Node) error {
			ids, err := p.strList(v, key("client_cert_identities"))
			if err != nil {
				return err
			}
			for i, id := range ids {
				if strings.TrimSpace(id) == "" {
					return p.errf(v.Content[i], fmt.Sprintf("%s[%d]", key("client_cert_identities"), i), "an identity cannot be empty")
				}
			}
			t.ClientCertIdentities = ids
			return nil
		},
		"ring": func(k, v *yaml.Node) error {
			s, err := p.str(v, key("ring"))
			if err != nil {
				return err
			}
			r := Ring(s)
			if r.Pools() == nil {
				return p.errf(v, key("ring"), "%q is not a ring (foundational, sensitive, hardened or unhardened)", s)
			}
			t.Ring = r
			return nil
		},
		"sandbox": func(k, v *yaml.Node) error {
			s, err := p.str(v, key("sandbox"))
			if err != nil {
				return err
			}
			switch Sandbox(s) {
			case Namespaces, GVisor:
				t.Sandbox = Sandbox(s)
				return nil
			}
			return p.errf(v, key("sandbox"), "%q is not a sandbox (namespaces or gvisor)", s)
		},
		"action_cache_writes": func(k, v *yaml.Node) error {
			b, err := p.boolean(v, key("action_cache_writes"))
			t.ActionCacheWrites = b
			return err
		},
		"quotas": func(k, v *yaml.Node) error { return p.quotas(v, key("quotas"), &t.Quotas) },
		"source": func(k, v *yaml.Node) error {
			return p.mapping(v, key("source"), map[string]func(k, v *yaml.Node) error{
				"repository": func(k, v *yaml.Node) error {
					s, err := p.str(v, key("source.repository"))
					t.Source.Repository = s
					return err
				},
				"protected_branch": func(k, v *yaml.Node) error {
					s, err := p.str(v, key("source.protected_branch"))
					t.Source.ProtectedBranch = s
					return err
				},
			}, "repository")
		},
	}, "name", "instance_names")
	if err != nil {
		return nil, err
	}
	if len(t.Tokens) == 0 && len(t.ClientCertIdentities) == 0 {
		return nil, p.errf(n, at+".tokens", "tenant %q has no credentials: give tokens or client_cert_identities", t.Name)
	}
	if t.Ring == Hardened && t.Sandbox != GVisor && t.ActionCacheWrites {
		return nil, p.errf(n, at+".ring", "tenant %q is hardened, so it must be sandboxed with gVisor (sandbox: gvisor) or verifiable (action_cache_writes: false)", t.Name)
	}
	return t, nil
}

func (p *parser) quotas(n *yaml.Node, at string, q *Quotas) error {
	size := func(name string, dst *int64) func(k, v *yaml.Node) error {
		return func(k, v *yaml.Node) error {
			s, err := p.scalar(v, at+"."+name)
			if err != nil {
				return err
			}
			b, err := ParseBytes(s)
			if err != nil {
				return p.errf(v, at+"."+name, "%v", err)
			}
			if b == 0 {
				return p.errf(v, at+"."+name, "must be more than 0")
			}
			*dst = b
			return nil
		}
	}
	return p.mapping(n, at, map[string]func(k, v *yaml.Node) error{
		"cas_bytes":        size("cas_bytes", &q.CASBytes),
		"max_output_bytes": size("max_output_bytes", &q.MaxOutputBytes),
		"concurrent_actions": func(k, v *yaml.Node) error {
			c, err := p.integer(v, at+".concurrent_actions")
			if err != nil {
				return err
			}
			if c < 1 || c > 100000 {
				return p.errf(v, at+".concurrent_actions", "%d is not between 1 and 100000", c)
			}
			q.ConcurrentActions = c
			return nil
		},
		"max_action_timeout": func(k, v *yaml.Node) error {
			s, err := p.scalar(v, at+".max_action_timeout")
			if err != nil {
				return err
			}
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return p.errf(v, at+".max_action_timeout", "%q is not a positive duration (examples: 90s, 15m, 2h)", s)
			}
			q.MaxActionTimeout = d
			return nil
		},
	})
}

// validate checks what spans tenants: unique names, instance names,
// tokens and identities.
func (p *parser) validate(cfg *Config, root *yaml.Node) error {
	if len(cfg.Tenants) == 0 {
		return p.errf(root, "tenants", "at least one tenant is required")
	}
	names := map[string]bool{}
	instances := map[string]string{}
	tokens := map[TokenHash]string{}
	ids := map[string]string{}
	for _, t := range cfg.Tenants {
		at := &yaml.Node{Line: t.Line}
		if names[t.Name] {
			return p.errf(at, "name", "tenant name %q is used twice", t.Name)
		}
		names[t.Name] = true
		for _, in := range t.InstanceNames {
			if other, dup := instances[in]; dup {
				return p.errf(at, "instance_names", "instance name %q belongs to tenants %q and %q; each instance has one owner", in, other, t.Name)
			}
			instances[in] = t.Name
		}
		for _, h := range t.Tokens {
			if other, dup := tokens[h]; dup {
				return p.errf(at, "tokens", "the same token is given to tenants %q and %q", other, t.Name)
			}
			tokens[h] = t.Name
		}
		for _, id := range t.ClientCertIdentities {
			if other, dup := ids[id]; dup {
				return p.errf(at, "client_cert_identities", "identity %q is given to tenants %q and %q", id, other, t.Name)
			}
			ids[id] = t.Name
		}
	}
	if cfg.Workers != nil {
		for _, t := range cfg.Tenants {
			ok := false
			for _, pool := range t.Ring.Pools() {
				if cfg.Workers[pool] > 0 {
					ok = true
				}
			}
			if !ok {
				return p.errf(&yaml.Node{Line: t.Line}, "workers", "tenant %q (ring %s) needs a %s worker, but workers: gives none", t.Name, t.Ring, t.Ring.Pools()[0])
			}
		}
	}
	return nil
}

// Tenant returns the tenant with that name, or nil.
func (c *Config) Tenant(name string) *Tenant {
	for _, t := range c.Tenants {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// WorkerCounts returns how many local workers each pool gets: the workers:
// key if given, else one worker for each pool some tenant needs (for the
// foundational pool, one per foundational tenant).
func (c *Config) WorkerCounts() map[Pool]int {
	if c.Workers != nil {
		out := map[Pool]int{}
		for p, n := range c.Workers {
			if n > 0 {
				out[p] = n
			}
		}
		return out
	}
	out := map[Pool]int{}
	for _, t := range c.Tenants {
		switch t.Ring {
		case Foundational:
			out[FoundationalPool]++
		case Hardened:
			if out[ProductionPool] == 0 {
				out[ProductionPool] = 1
			}
		default:
			out[t.Ring.Pools()[0]] = 1
		}
	}
	return out
}
