// Package verify fetches an image's signed hallmark manifest from an OCI
// registry, verifies it with trusted keys, and turns it into policy facts.
//
// As in sigstore-go, what is trusted (keys, builder ids: a TrustSource built
// once per deployment, usually from TUF) is separate from what is required
// (the policy, evaluated per call by gate/policy). Nothing the registry says
// is believed without a signature from a trusted key over a statement whose
// subject is the image's manifest digest.
package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hallmark-build/hallmark/gate/policy"
	"github.com/hallmark-build/hallmark/signer/dsse"
	"github.com/hallmark-build/hallmark/signer/provenance"
)

// ErrVerification is the category of every verification failure.
var ErrVerification = errors.New("manifest verification failed")

// TrustSet is what a gate trusts at one moment.
type TrustSet struct {
	// Verifiers are the signers' public keys.
	Verifiers []dsse.Verifier
	// Builders, when not empty, are the only builder ids whose manifests are
	// believed at all (independently of any policy).
	Builders []string
}

// TrustSource yields the current trust set. TUF-backed sources refresh it;
// StaticTrust never changes.
type TrustSource interface {
	Trust(ctx context.Context) (TrustSet, error)
}

// StaticTrust is a fixed trust set, e.g. from --key.
type StaticTrust TrustSet

// Trust implements TrustSource.
func (s StaticTrust) Trust(context.Context) (TrustSet, error) { return TrustSet(s), nil }

// KeyFromPEM makes a verifier for a PEM PKIX public key.
func KeyFromPEM(pemBytes []byte) (dsse.Verifier, error) {
	pub, err := dsse.ParsePublicKeyPEM(pemBytes)
	if err != nil {
		return nil, err
	}
	return dsse.NewVerifier(pub)
}

// Envelope checks one envelope against the trust set and the image digest
// ("sha256:<hex>") and returns the facts its statement establishes. It is
// pure. Errors wrap ErrVerification and say what was wrong.
func Envelope(envelope []byte, imageDigest string, ts TrustSet) (policy.Facts, error) {
	hash, ok := strings.CutPrefix(imageDigest, "sha256:")
	if !ok {
		return policy.Facts{}, fmt.Errorf("%w: image digest %q is not sha256", ErrVerification, imageDigest)
	}
	env, err := dsse.Parse(envelope)
	if err != nil {
		return policy.Facts{}, fmt.Errorf("%w: %v", ErrVerification, err)
	}
	payload, err := env.Verify(dsse.PayloadTypeInToto, ts.Verifiers...)
	if err != nil {
		return policy.Facts{}, fmt.Errorf("%w: signature: %v (signed by key id(s) %s, not a trusted key)", ErrVerification, err, keyIDs(env))
	}
	st, err := provenance.Parse(payload)
	if err != nil {
		return policy.Facts{}, fmt.Errorf("%w: %v", ErrVerification, err)
	}
	if _, ok := st.SubjectBySHA256(hash); !ok {
		return policy.Facts{}, fmt.Errorf("%w: image digest %s is not a subject of the manifest (subjects: %s)", ErrVerification, imageDigest, subjects(st))
	}
	f := FactsOf(st)
	f.ImageDigest = imageDigest
	f.KeyID = signingKey(env, ts.Verifiers)
	if len(ts.Builders) > 0 && !contains(ts.Builders, f.BuilderID) {
		return policy.Facts{}, fmt.Errorf("%w: builder %q is not a trusted builder id", ErrVerification, f.BuilderID)
	}
	return f, nil
}

// FactsOf extracts policy facts from a statement (already verified).
func FactsOf(st *provenance.Statement) policy.Facts {
	bd := st.Predicate.BuildDefinition
	rd := st.Predicate.RunDetails
	f := policy.Facts{
		BuilderID:    rd.Builder.ID,
		SourceCommit: bd.ExternalParameters.Source.Commit,
		Targets:      append([]string(nil), bd.ExternalParameters.Targets...),
		InvocationID: rd.Metadata.InvocationID,
		Tenant:       bd.InternalParameters.Tenant,
	}
	if rd.Metadata.FinishedOn != nil {
		f.FinishedOn = *rd.Metadata.FinishedOn
	}
	for i, dep := range bd.ResolvedDependencies {
		if i == 0 && dep.Name == "source" {
			f.SourceRepository = strings.TrimPrefix(dep.URI, "git+")
			if dep.URI == "git" {
				f.SourceRepository = ""
			}
			f.ProtectedBranch = annotation(dep.Annotations, "protectedBranch")
			continue
		}
		if name, ok := strings.CutPrefix(dep.Name, "external/"); ok {
			f.ThirdParty = append(f.ThirdParty, policy.Dep{
				Name:        name,
				Digest:      "sha256:" + dep.Digest["sha256"],
				Allowlisted: annotation(dep.Annotations, "allowlisted") == "true",
			})
		}
	}
	if sum, err := st.Summary(); err == nil {
		for _, c := range sum.ClientWritten {
			f.ClientWritten = append(f.ClientWritten, policy.Input{Path: c.Path, Digest: c.Digest})
		}
	}
	return f
}

// annotation reads a scalar annotation as a string ("" if absent).
func annotation(raw []byte, key string) string {
	if len(raw) == 0 {
		return ""
	}
	var m map[string]any
	if err := jsonUnmarshal(raw, &m); err != nil {
		return ""
	}
	switch v := m[key].(type) {
	case string:
		return v
	case bool:
		return fmt.Sprint(v)
	}
	return ""
}

func keyIDs(env *dsse.Envelope) string {
	var ids []string
	for _, s := range env.Signatures {
		id := s.KeyID
		if id == "" {
			id = "(none)"
		}
		ids = append(ids, id)
	}
	return strings.Join(ids, ", ")
}

func signingKey(env *dsse.Envelope, vs []dsse.Verifier) string {
	msg := dsse.PAE(env.PayloadType, env.Payload)
	for _, s := range env.Signatures {
		for _, v := range vs {
			if v.Verify(msg, s.Sig) == nil {
				return v.KeyID()
			}
		}
	}
	return ""
}

func subjects(st *provenance.Statement) string {
	var out []string
	for _, s := range st.Subject {
		out = append(out, s.Name+"@sha256:"+s.Digest["sha256"])
	}
	return strings.Join(out, ", ")
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
