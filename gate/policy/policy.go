// Package policy holds the deploy gate's policy model and its pure evaluation.
//
// A policy is YAML, reviewed as code. It has a global section (defaults for
// every requirement and the globally allowed third-party packages) and one
// entry per service identity. Every identity that may deploy needs an entry,
// even an empty one: an identity without a policy is denied.
//
// The requirements form a fixed, documented set (see Requirements). Unknown
// fields anywhere in the file are errors, so a misspelt requirement can never
// silently weaken the gate.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// APIVersion is the only policy file version this package reads.
const APIVersion = "hallmark.dev/gate/v1"

// MaxPolicySize bounds the size of a policy file Parse accepts.
const MaxPolicySize = 4 << 20

// ErrInvalid is the category of every error Parse and Validate return.
var ErrInvalid = errors.New("invalid policy")

// Mode says what the gate does with a violation.
type Mode string

const (
	// Enforce denies a workload that violates its policy. It is the default.
	Enforce Mode = "enforce"
	// Audit admits a violating workload and records the violation.
	Audit Mode = "audit"
	// BreakGlass admits a violating workload only when the request carries a
	// justification; the use is recorded at once and marked for review.
	BreakGlass Mode = "break-glass"
)

func (m Mode) valid() bool { return m == Enforce || m == Audit || m == BreakGlass }

// Duration is a time.Duration that reads and writes Go duration strings
// ("720h", "30m") in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	if v <= 0 {
		return fmt.Errorf("line %d: duration %q must be positive", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Source is one accepted source repository and, optionally, the path
// prefixes within it that this identity's artifacts may be built from.
type Source struct {
	// Repository is the source repository URI exactly as the manifest's
	// verified resolved dependency names it.
	Repository string `yaml:"repository"`
	// PathPrefixes, when not empty, restrict the built targets' packages
	// (and any source paths the manifest lists) to these prefixes of the
	// repository, e.g. "services/frontend/". A prefix matches whole path
	// components: "services/front" does not match "services/frontend/x".
	PathPrefixes []string `yaml:"pathPrefixes,omitempty"`
}

// Requirements is the fixed set of checks a policy can ask for. In the global
// defaults and per identity a nil field means "not set here": an identity's
// field overrides the default, and a field set in neither place is not checked.
type Requirements struct {
	// Builders lists the accepted builder ids (runDetails.builder.id).
	Builders []string `yaml:"builders,omitempty"`
	// Sources lists the accepted source repositories and path prefixes.
	Sources []Source `yaml:"sources,omitempty"`
	// RequireProtectedBranch requires that the manifest records the source
	// commit as submitted on the repository's protected branch.
	RequireProtectedBranch *bool `yaml:"requireProtectedBranch,omitempty"`
	// RequireThirdPartyAllowlisted requires every third-party dependency to be
	// in the global allowedPackages (name and digest), or marked allowlisted
	// by the signer.
	RequireThirdPartyAllowlisted *bool `yaml:"requireThirdPartyAllowlisted,omitempty"`
	// ToleratedClientWritten lists glob patterns (path.Match syntax, plus
	// "**" for any number of path components) of client-written inputs that
	// are tolerated. When set, any client-written input matching none of them
	// is a violation; an empty list tolerates none.
	ToleratedClientWritten *[]string `yaml:"toleratedClientWritten,omitempty"`
	// MaxAge is the longest time since the manifest's build finished.
	MaxAge *Duration `yaml:"maxAge,omitempty"`
}

// Package is one globally allowed third-party package.
type Package struct {
	Name   string `yaml:"name"`
	Digest string `yaml:"digest"` // "sha256:<hex>"
}

// Global holds defaults and the globally allowed packages.
type Global struct {
	// Defaults apply to every identity that does not override them.
	Defaults Requirements `yaml:"defaults,omitempty"`
	// AllowedPackages are the reviewed third-party packages.
	AllowedPackages []Package `yaml:"allowedPackages,omitempty"`
}

// Identity is the policy of one service identity.
type Identity struct {
	// Mode is enforce (default), audit or break-glass.
	Mode         Mode `yaml:"mode,omitempty"`
	Requirements `yaml:",inline"`
}

// Policy is a whole policy file.
type Policy struct {
	APIVersion string               `yaml:"apiVersion"`
	Global     Global               `yaml:"global,omitempty"`
	Identities map[string]*Identity `yaml:"identities"`
}

// Parse reads and validates a policy. Unknown fields, duplicate keys, bad
// durations, bad modes and a missing apiVersion are errors.
func Parse(b []byte) (*Policy, error) {
	if len(b) > MaxPolicySize {
		return nil, fmt.Errorf("%w: %d bytes, more than the %d allowed", ErrInvalid, len(b), MaxPolicySize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var p Policy
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file", ErrInvalid)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrInvalid)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks the policy as a whole.
func (p *Policy) Validate() error {
	var errs []string
	if p.APIVersion != APIVersion {
		errs = append(errs, fmt.Sprintf("apiVersion is %q, want %q", p.APIVersion, APIVersion))
	}
	errs = append(errs, p.Global.Defaults.validate("global.defaults")...)
	for i, pk := range p.Global.AllowedPackages {
		if pk.Name == "" {
			errs = append(errs, fmt.Sprintf("global.allowedPackages[%d]: name is empty", i))
		}
		if !validDigest(pk.Digest) {
			errs = append(errs, fmt.Sprintf("global.allowedPackages[%d] (%s): digest %q is not sha256:<64 hex>", i, pk.Name, pk.Digest))
		}
	}
	if len(p.Identities) == 0 {
		errs = append(errs, "identities: no identity has a policy")
	}
	for _, name := range sortedKeys(p.Identities) {
		id := p.Identities[name]
		where := "identities." + name
		if name == "" {
			errs = append(errs, "identities: empty identity name")
		}
		if id == nil {
			// "name: {}" or "name:" both mean the empty policy.
			p.Identities[name] = &Identity{}
			continue
		}
		if id.Mode != "" && !id.Mode.valid() {
			errs = append(errs, fmt.Sprintf("%s.mode: %q is not enforce, audit or break-glass", where, id.Mode))
		}
		errs = append(errs, id.Requirements.validate(where)...)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	return nil
}

func (r *Requirements) validate(where string) []string {
	var errs []string
	for i, b := range r.Builders {
		if b == "" {
			errs = append(errs, fmt.Sprintf("%s.builders[%d] is empty", where, i))
		}
	}
	for i, s := range r.Sources {
		if s.Repository == "" {
			errs = append(errs, fmt.Sprintf("%s.sources[%d].repository is empty", where, i))
		}
		for j, pp := range s.PathPrefixes {
			if pp == "" || strings.HasPrefix(pp, "/") || strings.Contains(pp, "..") {
				errs = append(errs, fmt.Sprintf("%s.sources[%d].pathPrefixes[%d]: %q must be a relative path without ..", where, i, j, pp))
			}
		}
	}
	if r.ToleratedClientWritten != nil {
		for i, g := range *r.ToleratedClientWritten {
			if _, err := path.Match(strings.ReplaceAll(g, "**", "*"), ""); err != nil {
				errs = append(errs, fmt.Sprintf("%s.toleratedClientWritten[%d]: bad pattern %q", where, i, g))
			}
		}
	}
	return errs
}

// Marshal writes the policy as YAML that Parse reads back.
func (p *Policy) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Effective returns the requirements and mode that apply to identity: the
// identity's own fields over the global defaults. ok is false when the
// identity has no policy.
func (p *Policy) Effective(identity string) (r Requirements, mode Mode, ok bool) {
	id, ok := p.Identities[identity]
	if !ok {
		return Requirements{}, "", false
	}
	if id == nil {
		id = &Identity{}
	}
	d := p.Global.Defaults
	r = id.Requirements
	if r.Builders == nil {
		r.Builders = d.Builders
	}
	if r.Sources == nil {
		r.Sources = d.Sources
	}
	if r.RequireProtectedBranch == nil {
		r.RequireProtectedBranch = d.RequireProtectedBranch
	}
	if r.RequireThirdPartyAllowlisted == nil {
		r.RequireThirdPartyAllowlisted = d.RequireThirdPartyAllowlisted
	}
	if r.ToleratedClientWritten == nil {
		r.ToleratedClientWritten = d.ToleratedClientWritten
	}
	if r.MaxAge == nil {
		r.MaxAge = d.MaxAge
	}
	mode = id.Mode
	if mode == "" {
		mode = Enforce
	}
	return r, mode, true
}

func validDigest(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
