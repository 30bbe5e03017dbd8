// Package service is the signer's gRPC API (signerpb.Signer): it validates a
// request, asks a Tracer to verify every artifact back to its sources, turns
// the verified facts into SLSA provenance and signs it as a DSSE envelope.
//
// There is no call that signs caller-supplied bytes: the request names
// artifacts by digest and carries claims (tenant, commit, targets); every
// byte of the statement comes from the Tracer's verified result or from the
// server's own configuration.
package service

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/signer/dsse"
	"github.com/hallmark-build/hallmark/signer/key"
	"github.com/hallmark-build/hallmark/signer/provenance"
	"github.com/hallmark-build/hallmark/signer/signerpb"
)

// Tracer verifies artifacts back to their sources through the farm's records.
// It returns the complete verified result or an error naming the first input
// it could not verify; it never returns a partial result without an error.
type Tracer interface {
	Trace(ctx context.Context, q Query) (*Trace, error)
}

// Query is one validated request, as the Tracer sees it.
type Query struct {
	Tenant       string
	Artifacts    []provenance.Artifact
	Repository   string
	Commit       string // full lower-case hex
	InvocationID string // "" means any invocation
}

// Trace is a Tracer's verified result.
type Trace struct {
	// Repository is the repository the source inputs were checked against
	// (the tenant's configured one); "" keeps the client's claim.
	Repository   string
	Actions      []provenance.Action
	ThirdParty   []provenance.ThirdParty
	Counts       provenance.Counts
	ClientFiles  []provenance.ClientInput
	StartedOn    time.Time
	FinishedOn   time.Time
	InvocationID string // the invocation the actions belong to, if known
	// ProtectedBranch is the branch the commit was verified to be
	// reachable from ("" if none was checked); the statement records it.
	ProtectedBranch string
}

// Server implements signerpb.SignerServer.
type Server struct {
	signerpb.UnimplementedSignerServer
	signer key.Signer
	tracer Tracer
	o      options
}

var _ signerpb.SignerServer = (*Server)(nil)

// New returns a server that traces with tracer and signs with signer.
func New(signer key.Signer, tracer Tracer, opts ...Option) (*Server, error) {
	if signer == nil || tracer == nil {
		return nil, errors.New("service: a signer and a tracer are required")
	}
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	return &Server{signer: signer, tracer: tracer, o: o}, nil
}

// MakeManifest implements signerpb.SignerServer.
func (s *Server) MakeManifest(ctx context.Context, req *signerpb.MakeManifestRequest) (*signerpb.MakeManifestResponse, error) {
	q, err := s.validate(req)
	if err != nil {
		return nil, err
	}
	log := s.o.logger.With("tenant", q.Tenant, "commit", q.Commit, "artifacts", len(q.Artifacts))
	tr, err := s.tracer.Trace(ctx, q)
	if err != nil {
		st := refusal(ctx, err)
		log.Warn("manifest refused", "code", st.Code().String(), "reason", st.Message())
		return nil, st.Err()
	}
	if tr == nil {
		return nil, status.Error(codes.Internal, "tracer returned no result")
	}
	facts := provenance.Facts{
		Artifacts:    q.Artifacts,
		Targets:      req.GetTargets(),
		Repository:   q.Repository,
		Commit:       q.Commit,
		FarmID:       s.o.farmID,
		Tenant:       q.Tenant,
		BuilderID:    s.o.builderID,
		InvocationID: q.InvocationID,
		StartedOn:    tr.StartedOn,
		FinishedOn:   tr.FinishedOn,
		ThirdParty:   tr.ThirdParty,
		Actions:      tr.Actions,
		Counts:       tr.Counts,
		ClientFiles:  tr.ClientFiles,
	}
	facts.ProtectedBranch = tr.ProtectedBranch
	if tr.Repository != "" {
		facts.Repository = tr.Repository
	}
	if facts.InvocationID == "" {
		facts.InvocationID = tr.InvocationID
	}
	st, err := provenance.Build(facts)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "building provenance: %v", err)
	}
	payload, err := st.Marshal()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encoding provenance: %v", err)
	}
	env, err := dsse.Sign(ctx, dsse.PayloadTypeInToto, payload, s.signer)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "signing: %v", err)
	}
	out, err := env.MarshalJSON()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encoding envelope: %v", err)
	}
	log.Info("manifest signed", "actions", len(tr.Actions), "key", s.signer.KeyID())
	return &signerpb.MakeManifestResponse{Envelope: out, KeyId: s.signer.KeyID()}, nil
}

// GetPublicKey implements signerpb.SignerServer.
func (s *Server) GetPublicKey(ctx context.Context, _ *signerpb.GetPublicKeyRequest) (*signerpb.GetPublicKeyResponse, error) {
	der, err := x509.MarshalPKIXPublicKey(s.signer.Public())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encoding public key: %v", err)
	}
	return &signerpb.GetPublicKeyResponse{
		PublicKeyPem: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		KeyId:        s.signer.KeyID(),
	}, nil
}

func (s *Server) validate(req *signerpb.MakeManifestRequest) (Query, error) {
	bad := func(format string, args ...any) (Query, error) {
		return Query{}, status.Errorf(codes.InvalidArgument, format, args...)
	}
	if req.GetTenant() == "" {
		return bad("missing tenant")
	}
	if len(req.GetTenant()) > 128 {
		return bad("tenant name is %d bytes, the limit is 128", len(req.GetTenant()))
	}
	if n := len(req.GetArtifacts()); n == 0 {
		return bad("no artifacts")
	} else if n > s.o.maxArtifacts {
		return bad("%d artifacts, the limit is %d", n, s.o.maxArtifacts)
	}
	if len(req.GetTargets()) > s.o.maxArtifacts {
		return bad("%d targets, the limit is %d", len(req.GetTargets()), s.o.maxArtifacts)
	}
	for i, t := range req.GetTargets() {
		if t == "" || len(t) > 4096 {
			return bad("target %d is empty or longer than 4096 bytes", i)
		}
	}
	if len(req.GetRepository()) > 4096 || len(req.GetInvocationId()) > 256 {
		return bad("repository or invocation id too long")
	}
	if err := checkCommit(req.GetCommit()); err != nil {
		return bad("commit: %v", err)
	}
	q := Query{Tenant: req.GetTenant(), Repository: req.GetRepository(), Commit: req.GetCommit(), InvocationID: req.GetInvocationId()}
	seen := map[digest.Digest]bool{}
	for i, a := range req.GetArtifacts() {
		d, err := digest.New(a.GetSha256(), a.GetSizeBytes())
		if err != nil {
			return bad("artifact %d (%q): %v", i, clip(a.GetName()), err)
		}
		if a.GetName() == "" || len(a.GetName()) > 4096 {
			return bad("artifact %d (%s): name is empty or longer than 4096 bytes", i, d)
		}
		if seen[d] {
			return bad("artifact %d (%q): digest %s given twice", i, clip(a.GetName()), d)
		}
		seen[d] = true
		q.Artifacts = append(q.Artifacts, provenance.Artifact{Name: a.GetName(), Digest: d})
	}
	return q, nil
}

// refusal turns a Tracer error into the status the caller gets: the
// Tracer's own status if it set one, the context's if it ended, and
// FailedPrecondition with the tracer's reason otherwise.
func refusal(ctx context.Context, err error) *status.Status {
	if st, ok := status.FromError(err); ok {
		return st
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus()
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err)
	}
	return status.New(codes.FailedPrecondition, "refused: "+err.Error())
}

func checkCommit(c string) error {
	if len(c) != 40 && len(c) != 64 {
		return fmt.Errorf("%q is not a full 40 or 64 character hex object name", clip(c))
	}
	for i := 0; i < len(c); i++ {
		if !(c[i] >= '0' && c[i] <= '9' || c[i] >= 'a' && c[i] <= 'f') {
			return fmt.Errorf("%q is not lower-case hex", clip(c))
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
