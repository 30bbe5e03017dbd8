package tenant

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

type ctxKey struct{}

// NewContext returns ctx carrying the authenticated tenant.
func NewContext(ctx context.Context, t *Tenant) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// FromContext returns the tenant the request was authenticated as.
func FromContext(ctx context.Context) (*Tenant, bool) {
	t, ok := ctx.Value(ctxKey{}).(*Tenant)
	return t, ok && t != nil
}

// Authenticator maps the credentials of a request to a tenant. The
// configuration it uses can be swapped at run time (SIGHUP reload); requests
// already authenticated keep the tenant they got.
type Authenticator struct {
	cfg atomic.Pointer[Config]
}

// NewAuthenticator authenticates against cfg.
func NewAuthenticator(cfg *Config) *Authenticator {
	a := &Authenticator{}
	a.cfg.Store(cfg)
	return a
}

// Swap replaces the configuration for requests that arrive from now on.
func (a *Authenticator) Swap(cfg *Config) { a.cfg.Store(cfg) }

// Config returns the configuration in use.
func (a *Authenticator) Config() *Config { return a.cfg.Load() }

// unauthenticatedHelp tells a Bazel user what to pass.
const unauthenticatedHelp = "this farm serves several tenants and needs your tenant's credential: " +
	"pass --remote_header=Authorization=Bearer <token> to Bazel (or a client certificate, when the farm uses TLS)"

// Authenticate returns the tenant of the request in ctx: by its bearer token
// ("authorization: Bearer <token>" metadata), else by the identity of its
// verified TLS client certificate. A missing or unknown credential is
// UNAUTHENTICATED with a message telling a Bazel user what to pass.
func (a *Authenticator) Authenticate(ctx context.Context) (*Tenant, error) {
	cfg := a.cfg.Load()
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) > 1 {
		return nil, status.Error(codes.Unauthenticated, "more than one authorization header; send exactly one. "+unauthenticatedHelp)
	}
	if len(vals) == 1 {
		scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return nil, status.Error(codes.Unauthenticated, `the authorization header is not "Bearer <token>". `+unauthenticatedHelp)
		}
		if t := matchToken(cfg, HashToken(strings.TrimSpace(tok))); t != nil {
			return t, nil
		}
		return nil, status.Error(codes.Unauthenticated, "the bearer token is not valid for any tenant of this farm (was it revoked?). "+unauthenticatedHelp)
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			cert := ti.State.VerifiedChains[0][0]
			if t := matchCert(cfg, cert); t != nil {
				return t, nil
			}
			return nil, status.Errorf(codes.Unauthenticated, "the client certificate %q is not an identity of any tenant of this farm. %s", cert.Subject.String(), unauthenticatedHelp)
		}
	}
	return nil, status.Error(codes.Unauthenticated, "no credentials. "+unauthenticatedHelp)
}

// matchToken compares h with every configured token hash in constant time
// (per comparison, and without stopping at a match).
func matchToken(cfg *Config, h TokenHash) *Tenant {
	var found *Tenant
	for _, t := range cfg.Tenants {
		for _, want := range t.Tokens {
			if subtle.ConstantTimeCompare(h[:], want[:]) == 1 {
				found = t
			}
		}
	}
	return found
}

// CertIdentities returns the identities a client certificate proves: its
// subject's full distinguished name and common name, and its URI, DNS and
// e-mail subject alternative names.
func CertIdentities(c *x509.Certificate) []string {
	ids := []string{c.Subject.String()}
	if c.Subject.CommonName != "" {
		ids = append(ids, c.Subject.CommonName)
	}
	for _, u := range c.URIs {
		ids = append(ids, u.String())
	}
	ids = append(ids, c.DNSNames...)
	ids = append(ids, c.EmailAddresses...)
	return ids
}

func matchCert(cfg *Config, c *x509.Certificate) *Tenant {
	ids := CertIdentities(c)
	for _, t := range cfg.Tenants {
		for _, want := range t.ClientCertIdentities {
			for _, id := range ids {
				if id == want {
					return t
				}
			}
		}
	}
	return nil
}

// UnaryInterceptor authenticates every unary RPC before its handler runs
// and puts the tenant in the handler's context.
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		t, err := a.Authenticate(ctx)
		if err != nil {
			return nil, err
		}
		return handler(NewContext(ctx, t), req)
	}
}

// StreamInterceptor authenticates every streaming RPC before its handler
// runs and puts the tenant in the stream's context.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		t, err := a.Authenticate(ss.Context())
		if err != nil {
			return err
		}
		return handler(srv, &tenantStream{ServerStream: ss, ctx: NewContext(ss.Context(), t)})
	}
}

type tenantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *tenantStream) Context() context.Context { return s.ctx }
