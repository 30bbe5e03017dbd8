package service

import (
	"context"

	"github.com/hallmark-build/hallmark/signer/provenance"
	"github.com/hallmark-build/hallmark/signer/trace"
)

// FromTrace adapts signer/trace's tracer to the server's Tracer. A
// trace.RefusalError becomes FailedPrecondition naming the input (see
// refusal).
func FromTrace(t *trace.Tracer) Tracer { return traceAdapter{t} }

type traceAdapter struct{ t *trace.Tracer }

func (a traceAdapter) Trace(ctx context.Context, q Query) (*Trace, error) {
	req := trace.Request{Tenant: q.Tenant, Commit: q.Commit, InvocationID: q.InvocationID}
	for _, art := range q.Artifacts {
		req.Artifacts = append(req.Artifacts, trace.Artifact{Name: art.Name, Digest: art.Digest})
	}
	res, err := a.t.Trace(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &Trace{
		Counts: provenance.Counts{
			Generated: res.Counts.Generated, Source: res.Counts.Source,
			ThirdParty: res.Counts.ThirdParty, ClientWritten: res.Counts.ClientWritten,
		},
		StartedOn:       res.StartedOn,
		FinishedOn:      res.FinishedOn,
		ProtectedBranch: res.ProtectedBranch,
		Repository:      res.Repository,
	}
	if len(res.InvocationIDs) == 1 {
		out.InvocationID = res.InvocationIDs[0]
	}
	for _, act := range res.Actions {
		pa := provenance.Action{Digest: act.Digest, Mnemonic: act.Mnemonic, Arguments: act.Arguments, Outputs: act.Outputs}
		for _, e := range act.Environment {
			pa.Environment = append(pa.Environment, provenance.EnvVar{Name: e.Name, Value: e.Value})
		}
		for _, p := range act.Platform {
			pa.Platform = append(pa.Platform, provenance.Property{Name: p.Name, Value: p.Value})
		}
		out.Actions = append(out.Actions, pa)
	}
	for _, tp := range res.ThirdParty {
		out.ThirdParty = append(out.ThirdParty, provenance.ThirdParty{Name: tp.Name, TreeDigest: tp.Tree, Allowed: tp.Allowed})
	}
	for _, c := range res.ClientWritten {
		out.ClientFiles = append(out.ClientFiles, provenance.ClientInput{Path: c.Path, Digest: c.Digest, Content: c.Content, SymlinkTarget: c.SymlinkTarget})
	}
	return out, nil
}
