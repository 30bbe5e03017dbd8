package trace

import "github.com/hallmark-build/hallmark/signer/provenance"

// The methods below convert a Result into the facts signer/provenance
// builds statements from, so the signer's service maps a trace without
// knowing its details.

// ProvenanceActions returns the action graph as provenance actions, in log
// order.
func (r *Result) ProvenanceActions() []provenance.Action {
	out := make([]provenance.Action, 0, len(r.Actions))
	for _, a := range r.Actions {
		pa := provenance.Action{Digest: a.Digest, Mnemonic: a.Mnemonic, Arguments: a.Arguments, Outputs: a.Outputs}
		for _, e := range a.Environment {
			pa.Environment = append(pa.Environment, provenance.EnvVar{Name: e.Name, Value: e.Value})
		}
		for _, p := range a.Platform {
			pa.Platform = append(pa.Platform, provenance.Property{Name: p.Name, Value: p.Value})
		}
		out = append(out, pa)
	}
	return out
}

// ProvenanceThirdParty returns the third-party repositories.
func (r *Result) ProvenanceThirdParty() []provenance.ThirdParty {
	out := make([]provenance.ThirdParty, 0, len(r.ThirdParty))
	for _, t := range r.ThirdParty {
		out = append(out, provenance.ThirdParty{Name: t.Name, TreeDigest: t.Tree, Allowed: t.Allowed})
	}
	return out
}

// ProvenanceCounts returns the classification counts.
func (r *Result) ProvenanceCounts() provenance.Counts {
	return provenance.Counts{Generated: r.Counts.Generated, Source: r.Counts.Source,
		ThirdParty: r.Counts.ThirdParty, ClientWritten: r.Counts.ClientWritten}
}

// ProvenanceClientFiles returns the client-written inputs.
func (r *Result) ProvenanceClientFiles() []provenance.ClientInput {
	out := make([]provenance.ClientInput, 0, len(r.ClientWritten))
	for _, c := range r.ClientWritten {
		out = append(out, provenance.ClientInput{Path: c.Path, Digest: c.Digest, Content: c.Content})
	}
	return out
}
