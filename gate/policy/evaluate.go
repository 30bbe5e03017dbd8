package policy

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// Code classifies a reason so that tools can act on it without parsing text.
type Code string

// The reason codes Evaluate emits.
const (
	CodeNoPolicy        Code = "NO_POLICY"
	CodeVerification    Code = "VERIFICATION"
	CodeBuilder         Code = "BUILDER"
	CodeSource          Code = "SOURCE"
	CodePath            Code = "SOURCE_PATH"
	CodeProtectedBranch Code = "PROTECTED_BRANCH"
	CodeThirdParty      Code = "THIRD_PARTY"
	CodeClientWritten   Code = "CLIENT_WRITTEN"
	CodeMaxAge          Code = "MAX_AGE"
	CodeNoJustification Code = "BREAK_GLASS_NO_JUSTIFICATION"
	CodeBreakGlassUsed  Code = "BREAK_GLASS_USED"
	CodeAuditViolation  Code = "AUDIT_ONLY"
	CodeSatisfied       Code = "SATISFIED"
)

// Reason is one finding of an evaluation.
type Reason struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (r Reason) String() string { return string(r.Code) + ": " + r.Message }

// Decision is the outcome of Evaluate. It keeps every violation, not only the
// first, and says why the workload was admitted despite them, if it was.
type Decision struct {
	Allow      bool     `json:"allow"`
	Identity   string   `json:"identity"`
	Image      string   `json:"image"`
	Mode       Mode     `json:"mode,omitempty"`
	Violations []Reason `json:"violations,omitempty"`
	// Notes explain an admission despite violations (audit, break-glass).
	Notes []Reason `json:"notes,omitempty"`
	// Review is true when a human must review this admission (break-glass).
	Review bool `json:"review,omitempty"`
}

// Reasons returns violations followed by notes.
func (d Decision) Reasons() []Reason {
	return append(append([]Reason(nil), d.Violations...), d.Notes...)
}

// Evaluate decides whether the workload described by f may run as
// f.Identity under p at time now. It is pure: same inputs, same decision.
func Evaluate(p *Policy, f Facts, now time.Time) Decision {
	d := Decision{Identity: f.Identity, Image: f.Image}
	r, mode, ok := p.Effective(f.Identity)
	if !ok {
		d.Violations = append(d.Violations, Reason{CodeNoPolicy, fmt.Sprintf("identity %q has no policy; every identity needs one, even an empty one", f.Identity)})
		return d
	}
	d.Mode = mode
	d.Violations = violations(p, r, f, now)
	if len(d.Violations) == 0 {
		d.Allow = true
		return d
	}
	switch mode {
	case Audit:
		d.Allow = true
		d.Notes = append(d.Notes, Reason{CodeAuditViolation, fmt.Sprintf("identity %q is in audit mode: admitted with %d violation(s) recorded", f.Identity, len(d.Violations))})
	case BreakGlass:
		if strings.TrimSpace(f.Justification) == "" {
			d.Violations = append(d.Violations, Reason{CodeNoJustification, "identity is in break-glass mode but the request carries no justification"})
			return d
		}
		d.Allow = true
		d.Review = true
		d.Notes = append(d.Notes, Reason{CodeBreakGlassUsed, fmt.Sprintf("break-glass admission with justification %q; marked for review", f.Justification)})
	}
	return d
}

func violations(p *Policy, r Requirements, f Facts, now time.Time) []Reason {
	var out []Reason
	add := func(c Code, format string, args ...any) {
		out = append(out, Reason{c, fmt.Sprintf(format, args...)})
	}
	if len(f.VerifyErrors) > 0 {
		for _, e := range f.VerifyErrors {
			add(CodeVerification, "%s", e)
		}
		// Nothing in an unverified manifest can be believed.
		return out
	}
	if len(r.Builders) > 0 && !contains(r.Builders, f.BuilderID) {
		add(CodeBuilder, "builder %q is not one of the accepted builders %q", f.BuilderID, r.Builders)
	}
	if len(r.Sources) > 0 {
		var src *Source
		for i := range r.Sources {
			if r.Sources[i].Repository == f.SourceRepository {
				src = &r.Sources[i]
				break
			}
		}
		if src == nil {
			add(CodeSource, "source repository %q is not one of the accepted repositories %q", f.SourceRepository, repos(r.Sources))
		} else if len(src.PathPrefixes) > 0 {
			paths := append(targetPackages(f.Targets), f.SourcePaths...)
			if len(paths) == 0 {
				add(CodePath, "the manifest names no targets or source paths to check against path prefixes %q", src.PathPrefixes)
			}
			for _, pth := range paths {
				if !underAny(pth, src.PathPrefixes) {
					add(CodePath, "%q is outside the accepted path prefixes %q of %s", pth, src.PathPrefixes, src.Repository)
				}
			}
		}
	}
	if r.RequireProtectedBranch != nil && *r.RequireProtectedBranch && f.ProtectedBranch == "" {
		add(CodeProtectedBranch, "the manifest does not record commit %q as submitted on a protected branch", f.SourceCommit)
	}
	if r.RequireThirdPartyAllowlisted != nil && *r.RequireThirdPartyAllowlisted {
		allowed := map[Package]bool{}
		for _, pk := range p.Global.AllowedPackages {
			allowed[pk] = true
		}
		for _, dep := range f.ThirdParty {
			if !dep.Allowlisted && !allowed[Package{Name: dep.Name, Digest: dep.Digest}] {
				add(CodeThirdParty, "third-party package %q with digest %s is not globally allowed", dep.Name, dep.Digest)
			}
		}
	}
	if r.ToleratedClientWritten != nil {
		for _, in := range f.ClientWritten {
			if !matchAny(in.Path, *r.ToleratedClientWritten) {
				add(CodeClientWritten, "client-written input %q (%s) is not tolerated", in.Path, in.Digest)
			}
		}
	}
	if r.MaxAge != nil {
		max := time.Duration(*r.MaxAge)
		switch {
		case f.FinishedOn.IsZero():
			add(CodeMaxAge, "the manifest has no build finish time to check against max age %s", max)
		case now.Sub(f.FinishedOn) > max:
			add(CodeMaxAge, "manifest is %s old (built %s), more than the max age %s", now.Sub(f.FinishedOn).Truncate(time.Second), f.FinishedOn.UTC().Format(time.RFC3339), max)
		}
	}
	return out
}

// targetPackages turns Bazel labels into repository-relative package paths:
// "//services/frontend:bin" and "@//services/frontend" become
// "services/frontend". Labels in external repositories are kept as they are,
// so they never match a main-repository prefix.
func targetPackages(targets []string) []string {
	out := make([]string, 0, len(targets))
	for _, t := range targets {
		s := strings.TrimPrefix(t, "@")
		if !strings.HasPrefix(s, "//") {
			out = append(out, t)
			continue
		}
		s = strings.TrimPrefix(s, "//")
		if i := strings.IndexByte(s, ':'); i >= 0 {
			s = s[:i]
		}
		s = strings.TrimSuffix(s, "/...")
		if s == "..." {
			s = ""
		}
		out = append(out, s)
	}
	return out
}

// underAny reports whether p lies within one of the prefixes, matching whole
// path components.
func underAny(p string, prefixes []string) bool {
	p = path.Clean("/" + p)[1:]
	for _, pre := range prefixes {
		pre = strings.TrimSuffix(path.Clean("/" + pre)[1:], "/")
		if pre == "" || p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

// matchAny reports whether p matches one of the globs; "**" matches any
// number of path components.
func matchAny(p string, globs []string) bool {
	for _, g := range globs {
		if globMatch(strings.Split(g, "/"), strings.Split(p, "/")) {
			return true
		}
	}
	return false
}

func globMatch(g, p []string) bool {
	for len(g) > 0 {
		if g[0] == "**" {
			for i := 0; i <= len(p); i++ {
				if globMatch(g[1:], p[i:]) {
					return true
				}
			}
			return false
		}
		if len(p) == 0 {
			return false
		}
		if ok, _ := path.Match(g[0], p[0]); !ok {
			return false
		}
		g, p = g[1:], p[1:]
	}
	return len(p) == 0
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func repos(ss []Source) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Repository
	}
	return out
}
