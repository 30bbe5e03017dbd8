package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hallmark-build/hallmark/gate/policy"
)

// MaxEnvelopeBytes bounds an attached envelope the verifier downloads.
const MaxEnvelopeBytes = 16 << 20

// maxAttachments bounds how many attached envelopes are tried per image.
const maxAttachments = 32

const (
	dsseMediaType = "application/vnd.dsse.envelope.v1+json"
	artifactType  = "application/vnd.in-toto+json"
)

// Verifier fetches and verifies images' manifests from registries.
// It is safe for concurrent use.
type Verifier struct {
	trust  TrustSource
	remote []remote.Option
	now    func() time.Time
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithTransport sets the registry HTTP transport (default remote.DefaultTransport).
func WithTransport(t http.RoundTripper) Option {
	return func(v *Verifier) { v.remote = append(v.remote, remote.WithTransport(t)) }
}

// WithDefaultKeychain reads registry credentials from the Docker config
// (default: anonymous).
func WithDefaultKeychain() Option {
	return func(v *Verifier) { v.remote = append(v.remote, remote.WithAuthFromKeychain(authn.DefaultKeychain)) }
}

// New makes a Verifier that believes what trust says.
func New(trust TrustSource, opts ...Option) (*Verifier, error) {
	if trust == nil {
		return nil, fmt.Errorf("verify: no trust source")
	}
	v := &Verifier{trust: trust}
	for _, o := range opts {
		o(v)
	}
	return v, nil
}

// Resolve returns the manifest digest ref names (a digest reference resolves
// to itself without a network call).
func (v *Verifier) Resolve(ctx context.Context, ref string) (name.Digest, error) {
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		return name.Digest{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	if d, ok := r.(name.Digest); ok {
		return d, nil
	}
	desc, err := remote.Head(r, v.opts(ctx)...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("resolving %s to a digest: %w", ref, err)
	}
	return r.Context().Digest(desc.Digest.String()), nil
}

// Verify resolves ref, finds the envelopes attached to it (OCI referrers,
// with the tag-schema fallback, and cosign's .att tag), and returns the
// facts of the first one that verifies. When none does, the facts carry every
// reason in VerifyErrors; the error is for infrastructure failures only
// (bad reference, registry unreachable), which a gate must treat as deny.
func (v *Verifier) Verify(ctx context.Context, ref string) (policy.Facts, error) {
	f := policy.Facts{Image: ref}
	d, err := v.Resolve(ctx, ref)
	if err != nil {
		return f, err
	}
	f.ImageDigest = d.DigestStr()
	ts, err := v.trust.Trust(ctx)
	if err != nil {
		f.VerifyErrors = []string{fmt.Sprintf("no trusted keys: %v", err)}
		return f, nil
	}
	envs, err := v.attachments(ctx, d)
	if err != nil {
		return f, err
	}
	if len(envs) == 0 {
		f.VerifyErrors = []string{fmt.Sprintf("no signed manifest is attached to %s (unsigned image)", d)}
		return f, nil
	}
	var errs []string
	for _, e := range envs {
		got, err := Envelope(e.data, d.DigestStr(), ts)
		if err == nil {
			got.Image = ref
			return got, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", e.where, err))
	}
	f.VerifyErrors = errs
	return f, nil
}

type attached struct {
	where string
	data  []byte
}

// attachments lists candidate envelopes, deduplicated by layer digest.
func (v *Verifier) attachments(ctx context.Context, d name.Digest) ([]attached, error) {
	opts := v.opts(ctx)
	seen := map[v1.Hash]bool{}
	var out []attached
	var layers []struct {
		where string
		desc  v1.Descriptor
	}
	addFrom := func(where string, raw []byte) {
		var m struct {
			Layers []v1.Descriptor `json:"layers"`
		}
		if json.Unmarshal(raw, &m) != nil {
			return
		}
		for _, l := range m.Layers {
			if string(l.MediaType) == dsseMediaType && !seen[l.Digest] {
				seen[l.Digest] = true
				layers = append(layers, struct {
					where string
					desc  v1.Descriptor
				}{where, l})
			}
		}
	}
	idx, err := remote.Referrers(d, opts...)
	if err == nil {
		im, err := idx.IndexManifest()
		if err == nil {
			for _, m := range im.Manifests {
				if len(layers) >= maxAttachments {
					break
				}
				if m.ArtifactType != "" && m.ArtifactType != artifactType && !strings.Contains(m.ArtifactType, "empty") {
					continue
				}
				md, err := remote.Get(d.Context().Digest(m.Digest.String()), opts...)
				if err != nil {
					continue
				}
				addFrom("referrer "+m.Digest.String(), md.Manifest)
			}
		}
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("listing referrers of %s: %w", d, err)
	}
	tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".att")
	if md, err := remote.Get(tag, opts...); err == nil {
		addFrom("cosign tag "+tag.TagStr(), md.Manifest)
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("reading %s: %w", tag, err)
	}
	for i, l := range layers {
		if i >= maxAttachments {
			break
		}
		if l.desc.Size > MaxEnvelopeBytes {
			out = append(out, attached{l.where, nil})
			continue
		}
		layer, err := remote.Layer(d.Context().Digest(l.desc.Digest.String()), opts...)
		if err != nil {
			return nil, fmt.Errorf("fetching envelope %s: %w", l.desc.Digest, err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			return nil, fmt.Errorf("fetching envelope %s: %w", l.desc.Digest, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, MaxEnvelopeBytes+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("fetching envelope %s: %w", l.desc.Digest, err)
		}
		out = append(out, attached{l.where, b})
	}
	return out, nil
}

func (v *Verifier) opts(ctx context.Context) []remote.Option {
	return append([]remote.Option{remote.WithContext(ctx)}, v.remote...)
}
