package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/hallmark-build/hallmark/gate/policy"
	"github.com/hallmark-build/hallmark/gate/verify"
)

func init() {
	register(&command{name: "policy suggest", summary: "draft an enforce-mode policy for an identity from its images' manifests", run: runPolicySuggest})
}

func runPolicySuggest(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("policy suggest", flag.ContinueOnError)
	var tf trustFlags
	tf.register(fs)
	identity := fs.String("identity", "", "service identity (required)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hallmark policy suggest --identity=ID [--key=PUB | --tuf-root=ROOT --tuf-url=URL] REF...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *identity == "" || fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	ts, err := tf.source()
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark policy suggest: %v\n", err)
		return 2
	}
	v, err := verify.New(ts, verify.WithDefaultKeychain())
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark policy suggest: %v\n", err)
		return 2
	}
	var facts []policy.Facts
	for _, ref := range fs.Args() {
		f, err := v.Verify(ctx, ref)
		if err == nil && len(f.VerifyErrors) > 0 {
			err = fmt.Errorf("%s", strings.Join(f.VerifyErrors, "; "))
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "hallmark policy suggest: %s: %v\n", ref, err)
			return 1
		}
		facts = append(facts, f)
	}
	b, err := Suggest(*identity, facts).Marshal()
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark policy suggest: %v\n", err)
		return 1
	}
	fmt.Printf("# Drafted by 'hallmark policy suggest' from %d image(s); review before use.\n", len(facts))
	os.Stdout.Write(b)
	return 0
}

// Suggest drafts an enforce-mode policy for identity that the given
// (verified) facts satisfy: their builders, their repositories with the
// packages of their targets as path prefixes, the protected-branch
// requirement when every manifest records it, and their third-party
// packages as globally allowed.
func Suggest(identity string, facts []policy.Facts) *policy.Policy {
	builders := map[string]bool{}
	prefixes := map[string]map[string]bool{}
	protected := len(facts) > 0
	pkgs := map[policy.Package]bool{}
	var clientWritten []string
	seenCW := map[string]bool{}
	for _, f := range facts {
		builders[f.BuilderID] = true
		if prefixes[f.SourceRepository] == nil {
			prefixes[f.SourceRepository] = map[string]bool{}
		}
		for _, t := range f.Targets {
			prefixes[f.SourceRepository][labelPackage(t)] = true
		}
		if f.ProtectedBranch == "" {
			protected = false
		}
		for _, d := range f.ThirdParty {
			pkgs[policy.Package{Name: d.Name, Digest: d.Digest}] = true
		}
		for _, c := range f.ClientWritten {
			if !seenCW[c.Path] {
				seenCW[c.Path] = true
				clientWritten = append(clientWritten, c.Path)
			}
		}
	}
	id := &policy.Identity{Mode: policy.Enforce}
	id.Builders = sortedSet(builders)
	for _, repo := range sortedSet(map[string]bool(keys(prefixes))) {
		id.Sources = append(id.Sources, policy.Source{Repository: repo, PathPrefixes: sortedSet(prefixes[repo])})
	}
	t := true
	if protected {
		id.RequireProtectedBranch = &t
	}
	id.RequireThirdPartyAllowlisted = &t
	sort.Strings(clientWritten)
	if clientWritten == nil {
		clientWritten = []string{}
	}
	id.ToleratedClientWritten = &clientWritten
	p := &policy.Policy{APIVersion: policy.APIVersion, Identities: map[string]*policy.Identity{identity: id}}
	for pk := range pkgs {
		p.Global.AllowedPackages = append(p.Global.AllowedPackages, pk)
	}
	sort.Slice(p.Global.AllowedPackages, func(i, j int) bool { return p.Global.AllowedPackages[i].Name < p.Global.AllowedPackages[j].Name })
	return p
}

// labelPackage is the repository path of a main-repository label's package
// ("//a/b:c" → "a/b"); the whole repository ("") when there is none.
func labelPackage(label string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(label, "@"), "//")
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSuffix(strings.TrimSuffix(s, "..."), "/")
	if s == "" {
		return "."
	}
	return s
}

func keys[V any](m map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
