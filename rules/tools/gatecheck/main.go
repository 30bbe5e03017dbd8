// Command gatecheck is the checker behind hallmark_gate_test. It verifies a
// hallmark manifest (a DSSE envelope holding an in-toto Statement with SLSA
// v1 provenance) with the Go standard library only, so rules_go builds it
// with no dependencies and the test runs on the farm like any other:
//
//	gatecheck --envelope=M.intoto.jsonl --key=signer.pub --subject=FILE ... \
//	    [--identity=ID --policy=POLICY.json]
//
// It checks, in order: the envelope's signature with the ECDSA P-256 public
// key (PEM PKIX); the payload type, statement type, predicate type and
// buildType; that every --subject file's sha256 is a subject; that the
// signer verified a source commit; and that there are no unexplained inputs:
// every client-written input must match the policy's toleratedClientWritten
// patterns (none tolerated without a policy). With --policy (the gate's
// policy format, written as JSON, which YAML readers accept too) it also
// applies the identity's builders, sources and requireThirdPartyAllowlisted.
// Every failure is reported, not only the first.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// Formats the checker accepts.
const (
	PayloadType   = "application/vnd.in-toto+json"
	StatementType = "https://in-toto.io/Statement/v1"
	PredicateType = "https://slsa.dev/provenance/v1"
	BuildType     = "https://hallmark.build/bazel-remote/v1"
	MaxEnvelope   = 64 << 20
)

// Envelope is a DSSE envelope.
type Envelope struct {
	PayloadType string `json:"payloadType"`
	Payload     string `json:"payload"`
	Signatures  []struct {
		KeyID string `json:"keyid"`
		Sig   string `json:"sig"`
	} `json:"signatures"`
}

// PAE is DSSE's pre-authentication encoding.
func PAE(typ string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "DSSEv1 %d %s %d ", len(typ), typ, len(body))
	b.Write(body)
	return b.Bytes()
}

// Statement is the part of the in-toto Statement the checker reads.
type Statement struct {
	Type    string `json:"_type"`
	Subject []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	PredicateType string `json:"predicateType"`
	Predicate     struct {
		BuildDefinition struct {
			BuildType            string `json:"buildType"`
			ResolvedDependencies []struct {
				Name        string            `json:"name"`
				URI         string            `json:"uri"`
				Digest      map[string]string `json:"digest"`
				Annotations map[string]any    `json:"annotations"`
			} `json:"resolvedDependencies"`
		} `json:"buildDefinition"`
		RunDetails struct {
			Builder struct {
				ID string `json:"id"`
			} `json:"builder"`
			Byproducts []struct {
				Name        string          `json:"name"`
				Annotations json.RawMessage `json:"annotations"`
			} `json:"byproducts"`
		} `json:"runDetails"`
	} `json:"predicate"`
}

// Requirements is the subset of the gate's policy requirements the checker
// applies.
type Requirements struct {
	Builders []string `json:"builders,omitempty"`
	Sources  []struct {
		Repository   string   `json:"repository"`
		PathPrefixes []string `json:"pathPrefixes,omitempty"`
	} `json:"sources,omitempty"`
	RequireProtectedBranch       *bool     `json:"requireProtectedBranch,omitempty"`
	RequireThirdPartyAllowlisted *bool     `json:"requireThirdPartyAllowlisted,omitempty"`
	ToleratedClientWritten       *[]string `json:"toleratedClientWritten,omitempty"`
	MaxAge                       *string   `json:"maxAge,omitempty"`
}

// Policy is the gate's policy file, as JSON.
type Policy struct {
	APIVersion string `json:"apiVersion"`
	Global     struct {
		Defaults        Requirements `json:"defaults"`
		AllowedPackages []struct {
			Name   string `json:"name"`
			Digest string `json:"digest"`
		} `json:"allowedPackages,omitempty"`
	} `json:"global"`
	Identities map[string]*struct {
		Mode string `json:"mode,omitempty"`
		Requirements
	} `json:"identities"`
}

// ParsePolicy reads a JSON policy strictly (unknown fields are errors).
func ParsePolicy(b []byte) (*Policy, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Policy
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("policy: %v (gatecheck reads the gate's policy format written as JSON)", err)
	}
	if p.APIVersion != "hallmark.dev/gate/v1" {
		return nil, fmt.Errorf("policy: apiVersion %q, want hallmark.dev/gate/v1", p.APIVersion)
	}
	return &p, nil
}

// effective merges an identity's requirements over the defaults.
func (p *Policy) effective(id string) (Requirements, error) {
	ident, ok := p.Identities[id]
	if !ok || ident == nil {
		return Requirements{}, fmt.Errorf("identity %q has no entry in the policy: it may not deploy", id)
	}
	r := p.Global.Defaults
	o := ident.Requirements
	if o.Builders != nil {
		r.Builders = o.Builders
	}
	if o.Sources != nil {
		r.Sources = o.Sources
	}
	if o.RequireProtectedBranch != nil {
		r.RequireProtectedBranch = o.RequireProtectedBranch
	}
	if o.RequireThirdPartyAllowlisted != nil {
		r.RequireThirdPartyAllowlisted = o.RequireThirdPartyAllowlisted
	}
	if o.ToleratedClientWritten != nil {
		r.ToleratedClientWritten = o.ToleratedClientWritten
	}
	if o.MaxAge != nil {
		r.MaxAge = o.MaxAge
	}
	return r, nil
}

// Match reports whether p matches pattern (path.Match per component, plus
// "**" for any number of components).
func Match(pattern, p string) bool {
	return matchParts(strings.Split(pattern, "/"), strings.Split(p, "/"))
}

func matchParts(pat, parts []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(parts); i++ {
				if matchParts(pat[1:], parts[i:]) {
					return true
				}
			}
			return false
		}
		if len(parts) == 0 {
			return false
		}
		if ok, err := path.Match(pat[0], parts[0]); err != nil || !ok {
			return false
		}
		pat, parts = pat[1:], parts[1:]
	}
	return len(parts) == 0
}

// Input is what one check reads.
type Input struct {
	Envelope []byte
	KeyPEM   []byte
	Subjects map[string][]byte // file name -> content
	Identity string
	Policy   *Policy
}

// Check returns every problem found (none means the manifest passes).
func Check(in Input) []string {
	var bad []string
	badf := func(f string, a ...any) { bad = append(bad, fmt.Sprintf(f, a...)) }
	var env Envelope
	if err := json.Unmarshal(bytes.TrimSpace(in.Envelope), &env); err != nil {
		return []string{fmt.Sprintf("the envelope is not DSSE JSON: %v", err)}
	}
	blk, _ := pem.Decode(in.KeyPEM)
	if blk == nil {
		return []string{"the key file holds no PEM block"}
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return []string{fmt.Sprintf("the key file: %v", err)}
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return []string{fmt.Sprintf("the key is a %T, gatecheck verifies ECDSA keys", pub)}
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return []string{fmt.Sprintf("the envelope's payload is not base64: %v", err)}
	}
	h := sha256.Sum256(PAE(env.PayloadType, payload))
	verified := false
	for _, s := range env.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err == nil && ecdsa.VerifyASN1(ec, h[:], sig) {
			verified = true
			break
		}
	}
	if !verified {
		return []string{fmt.Sprintf("no signature of the envelope verifies with the key (%d signatures)", len(env.Signatures))}
	}
	if env.PayloadType != PayloadType {
		badf("payloadType %q, want %q", env.PayloadType, PayloadType)
	}
	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return append(bad, fmt.Sprintf("the payload is not an in-toto Statement: %v", err))
	}
	if st.Type != StatementType {
		badf("statement _type %q, want %q", st.Type, StatementType)
	}
	if st.PredicateType != PredicateType {
		badf("predicateType %q, want %q", st.PredicateType, PredicateType)
	}
	bd := st.Predicate.BuildDefinition
	if bd.BuildType != BuildType {
		badf("buildType %q, want %q", bd.BuildType, BuildType)
	}
	have := map[string]bool{}
	for _, s := range st.Subject {
		have[s.Digest["sha256"]] = true
	}
	for name, b := range in.Subjects {
		sum := sha256.Sum256(b)
		if !have[hex.EncodeToString(sum[:])] {
			badf("%s (sha256:%x) is not a subject of the manifest", name, sum)
		}
	}
	var sourceURI string
	if len(bd.ResolvedDependencies) == 0 || bd.ResolvedDependencies[0].Name != "source" || bd.ResolvedDependencies[0].Digest["gitCommit"] == "" {
		badf("the manifest records no verified source commit")
	} else {
		sourceURI = bd.ResolvedDependencies[0].URI
	}
	var cls struct {
		ClientWritten []struct {
			Path string `json:"path"`
		} `json:"clientWritten"`
		UnreviewedThirdParty []string `json:"unreviewedThirdParty"`
	}
	found := false
	for _, b := range st.Predicate.RunDetails.Byproducts {
		if b.Name == "hallmark:classification" {
			found = true
			if err := json.Unmarshal(b.Annotations, &cls); err != nil {
				badf("the classification byproduct does not parse: %v", err)
			}
		}
	}
	if !found {
		badf("the manifest has no hallmark:classification byproduct")
	}
	var req Requirements
	if in.Policy != nil {
		if req, err = in.Policy.effective(in.Identity); err != nil {
			return append(bad, err.Error())
		}
	}
	var tolerated []string
	if req.ToleratedClientWritten != nil {
		tolerated = *req.ToleratedClientWritten
	}
	for _, c := range cls.ClientWritten {
		ok := false
		for _, p := range tolerated {
			if Match(p, c.Path) {
				ok = true
				break
			}
		}
		if !ok {
			badf("unexplained input: client-written %s matches no toleratedClientWritten pattern", c.Path)
		}
	}
	if len(req.Builders) > 0 {
		ok := false
		for _, b := range req.Builders {
			ok = ok || b == st.Predicate.RunDetails.Builder.ID
		}
		if !ok {
			badf("builder %q is not one of the policy's builders %q", st.Predicate.RunDetails.Builder.ID, req.Builders)
		}
	}
	if len(req.Sources) > 0 {
		ok := false
		for _, s := range req.Sources {
			ok = ok || s.Repository == sourceURI || "git+"+s.Repository == sourceURI
		}
		if !ok {
			badf("source %q is not one of the policy's sources", sourceURI)
		}
	}
	if req.RequireThirdPartyAllowlisted != nil && *req.RequireThirdPartyAllowlisted {
		allowed := map[string]bool{}
		if in.Policy != nil {
			for _, p := range in.Policy.Global.AllowedPackages {
				allowed[p.Name+"@"+p.Digest] = true
			}
		}
		deps := bd.ResolvedDependencies
		if len(deps) > 0 {
			deps = deps[1:] // the source
		}
		for _, d := range deps {
			if a, _ := d.Annotations["allowlisted"].(bool); a || allowed[d.Name+"@sha256:"+d.Digest["sha256"]] {
				continue
			}
			badf("third-party %s is not allowlisted", d.Name)
		}
	}
	return bad
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxEnvelope+1))
	if err == nil && len(b) > MaxEnvelope {
		err = fmt.Errorf("%s is larger than %d bytes", name, MaxEnvelope)
	}
	return b, err
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("gatecheck", flag.ContinueOnError)
	envPath := fs.String("envelope", "", "the manifest (DSSE envelope JSON); required")
	keyPath := fs.String("key", "", "the signer's public key (PEM); required")
	identity := fs.String("identity", "", "the service identity the policy is applied for")
	policyPath := fs.String("policy", "", "the gate policy, JSON")
	var subjects multi
	fs.Var(&subjects, "subject", "a file whose sha256 must be a subject, repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *envPath == "" || *keyPath == "" {
		return errors.New("--envelope and --key are required")
	}
	in := Input{Identity: *identity, Subjects: map[string][]byte{}}
	var err error
	if in.Envelope, err = readLimited(*envPath); err != nil {
		return err
	}
	if in.KeyPEM, err = readLimited(*keyPath); err != nil {
		return err
	}
	for _, s := range subjects {
		if in.Subjects[s], err = readLimited(s); err != nil {
			return err
		}
	}
	if *policyPath != "" {
		if *identity == "" {
			return errors.New("--policy needs --identity")
		}
		b, err := readLimited(*policyPath)
		if err != nil {
			return err
		}
		if in.Policy, err = ParsePolicy(b); err != nil {
			return err
		}
	}
	if bad := Check(in); len(bad) > 0 {
		return fmt.Errorf("%s does not pass:\n  %s", *envPath, strings.Join(bad, "\n  "))
	}
	fmt.Fprintf(stdout, "gatecheck: %s passes (signature, %d subject(s), source, no unexplained inputs", *envPath, len(subjects))
	if in.Policy != nil {
		fmt.Fprintf(stdout, ", policy for %q", *identity)
	}
	fmt.Fprintln(stdout, ")")
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gatecheck:", err)
		os.Exit(1)
	}
}
