// Package publish puts signed manifests where deploy gates find them: OCI
// registries (the image and its DSSE envelope, attached as an OCI 1.1
// referrer and under cosign's attestation tag) and a TUF repository (the
// signers' public keys and builder ids as targets).
package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hallmark-build/hallmark/signer/dsse"
	"github.com/hallmark-build/hallmark/signer/provenance"
)

// Media types and annotation keys of attached manifests.
const (
	// DSSEMediaType is the mediaType of a layer holding a DSSE envelope, as
	// cosign writes it.
	DSSEMediaType types.MediaType = "application/vnd.dsse.envelope.v1+json"
	// ArtifactType is the artifactType of hallmark's OCI 1.1 referrer: an
	// in-toto statement in a DSSE envelope.
	ArtifactType = "application/vnd.in-toto+json"
	// EmptyConfigMediaType is the OCI 1.1 empty descriptor's mediaType.
	EmptyConfigMediaType types.MediaType = "application/vnd.oci.empty.v1+json"
	// PredicateTypeAnnotation is the layer annotation cosign sets to the
	// statement's predicate type.
	PredicateTypeAnnotation = "predicateType"
	// CosignSignatureAnnotation is cosign's signature annotation; for
	// attestations it is present and empty (the signature is in the envelope).
	CosignSignatureAnnotation = "dev.cosignproject.cosign/signature"
	// PredicateTypeOCIAnnotation carries the predicate type on the referrer
	// manifest, for registries' referrers filtering by annotation.
	PredicateTypeOCIAnnotation = "dev.hallmark.predicateType"
)

// ErrNotSubject means the image to push is not a subject of the envelope.
var ErrNotSubject = errors.New("image is not a subject of the envelope")

// Result says what a push wrote.
type Result struct {
	Image     name.Digest // the pushed image manifest (or index), by digest
	Referrer  name.Digest // the OCI 1.1 referrer manifest
	CosignTag name.Tag    // cosign's sha256-<hex>.att tag
}

// PushOption configures Push.
type PushOption func(*pushOptions)

type pushOptions struct {
	remote []remote.Option
}

// WithTransport sets the HTTP transport (default: remote.DefaultTransport).
func WithTransport(t http.RoundTripper) PushOption {
	return func(o *pushOptions) { o.remote = append(o.remote, remote.WithTransport(t)) }
}

// WithAuth sets registry credentials (default: anonymous, or the default
// keychain if WithDefaultKeychain is given).
func WithAuth(a authn.Authenticator) PushOption {
	return func(o *pushOptions) { o.remote = append(o.remote, remote.WithAuth(a)) }
}

// WithDefaultKeychain reads credentials from the Docker config, as docker and
// crane do.
func WithDefaultKeychain() PushOption {
	return func(o *pushOptions) { o.remote = append(o.remote, remote.WithAuthFromKeychain(authn.DefaultKeychain)) }
}

func (o *pushOptions) opts(ctx context.Context) []remote.Option {
	return append([]remote.Option{remote.WithContext(ctx), remote.WithReferrersTagFallback(true)}, o.remote...)
}

// Push pushes the single image (or index) of the OCI image layout in
// layoutDir to ref and attaches envelope to it. It refuses, before writing
// anything, unless the image's manifest digest is a subject of the envelope.
// The envelope's signature is not checked here (push holds no keys); gates
// check it.
func Push(ctx context.Context, layoutDir string, envelope []byte, ref string, opts ...PushOption) (*Result, error) {
	var o pushOptions
	for _, f := range opts {
		f(&o)
	}
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("publish: reference %q: %w", ref, err)
	}
	lp, err := layout.FromPath(layoutDir)
	if err != nil {
		return nil, fmt.Errorf("publish: OCI layout %s: %w", layoutDir, err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("publish: OCI layout %s: %w", layoutDir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("publish: OCI layout %s index.json: %w", layoutDir, err)
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("publish: OCI layout %s has %d manifests in index.json, want exactly 1", layoutDir, len(im.Manifests))
	}
	desc := im.Manifests[0]
	st, err := subjectsOf(envelope)
	if err != nil {
		return nil, err
	}
	if _, ok := st.SubjectBySHA256(desc.Digest.Hex); !ok || desc.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("publish: %w: manifest digest %s of %s is not among the envelope's %d subject(s)", ErrNotSubject, desc.Digest, layoutDir, len(st.Subject))
	}
	ropts := o.opts(ctx)
	switch {
	case desc.MediaType.IsImage():
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("publish: reading image %s: %w", desc.Digest, err)
		}
		if err := remote.Write(r, img, ropts...); err != nil {
			return nil, fmt.Errorf("publish: pushing image to %s: %w", r, err)
		}
	case desc.MediaType.IsIndex():
		ii, err := idx.ImageIndex(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("publish: reading index %s: %w", desc.Digest, err)
		}
		if err := remote.WriteIndex(r, ii, ropts...); err != nil {
			return nil, fmt.Errorf("publish: pushing index to %s: %w", r, err)
		}
	default:
		return nil, fmt.Errorf("publish: layout manifest %s has media type %q, neither image nor index", desc.Digest, desc.MediaType)
	}
	res, err := Attach(ctx, r.Context().Digest(desc.Digest.String()), v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, envelope, st.PredicateType, opts...)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// subjectsOf parses the envelope and its statement without verifying the
// signature.
func subjectsOf(envelope []byte) (*provenance.Statement, error) {
	env, err := dsse.Parse(envelope)
	if err != nil {
		return nil, fmt.Errorf("publish: envelope: %w", err)
	}
	if env.PayloadType != dsse.PayloadTypeInToto {
		return nil, fmt.Errorf("publish: envelope payload type is %q, want %q", env.PayloadType, dsse.PayloadTypeInToto)
	}
	st, err := provenance.Parse(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("publish: envelope statement: %w", err)
	}
	return st, nil
}

// Attach attaches envelope to the manifest subject (in repository
// subjectRef.Context()) twice: as an OCI 1.1 referrer whose subject is the
// image, and in the image under cosign's "sha256-<hex>.att" tag, merged with
// what is already there. Registries without the referrers API get the
// referrers tag schema instead.
func Attach(ctx context.Context, subjectRef name.Digest, subject v1.Descriptor, envelope []byte, predicateType string, opts ...PushOption) (*Result, error) {
	var o pushOptions
	for _, f := range opts {
		f(&o)
	}
	ropts := o.opts(ctx)
	repo := subjectRef.Context()
	layer := static.NewLayer(envelope, DSSEMediaType)
	ld, err := descriptorOf(layer)
	if err != nil {
		return nil, err
	}
	ld.Annotations = map[string]string{PredicateTypeAnnotation: predicateType, CosignSignatureAnnotation: ""}
	if err := remote.WriteLayer(repo, layer, ropts...); err != nil {
		return nil, fmt.Errorf("publish: uploading envelope to %s: %w", repo, err)
	}

	// The OCI 1.1 referrer.
	empty := static.NewLayer([]byte("{}"), EmptyConfigMediaType)
	ed, err := descriptorOf(empty)
	if err != nil {
		return nil, err
	}
	if err := remote.WriteLayer(repo, empty, ropts...); err != nil {
		return nil, fmt.Errorf("publish: uploading empty config to %s: %w", repo, err)
	}
	refm := rawManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        ed,
		Layers:        []v1.Descriptor{ld},
		Subject:       &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		Annotations:   map[string]string{PredicateTypeOCIAnnotation: predicateType},
	}
	refRaw, err := json.Marshal(refm)
	if err != nil {
		return nil, err
	}
	refDigest := repo.Digest("sha256:" + sha256Hex(refRaw))
	if err := remote.Put(refDigest, rawTaggable{refRaw, types.OCIManifestSchema1}, ropts...); err != nil {
		return nil, fmt.Errorf("publish: pushing referrer manifest to %s: %w", repo, err)
	}

	// Cosign's attestation tag: an image whose layers are DSSE envelopes.
	tag := repo.Tag(strings.Replace(subject.Digest.String(), ":", "-", 1) + ".att")
	layers := []v1.Descriptor{}
	if prev, err := remote.Get(tag, ropts...); err == nil {
		var pm rawManifest
		if err := json.Unmarshal(prev.Manifest, &pm); err != nil {
			return nil, fmt.Errorf("publish: existing %s is not a manifest: %w", tag, err)
		}
		for _, l := range pm.Layers {
			if l.Digest != ld.Digest {
				layers = append(layers, l)
			}
		}
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("publish: reading %s: %w", tag, err)
	}
	layers = append(layers, ld)
	cfg := v1.ConfigFile{RootFS: v1.RootFS{Type: "layers"}}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.Digest)
	}
	cfgRaw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgLayer := static.NewLayer(cfgRaw, types.OCIConfigJSON)
	cd, err := descriptorOf(cfgLayer)
	if err != nil {
		return nil, err
	}
	if err := remote.WriteLayer(repo, cfgLayer, ropts...); err != nil {
		return nil, fmt.Errorf("publish: uploading attestation config to %s: %w", repo, err)
	}
	attRaw, err := json.Marshal(rawManifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: cd, Layers: layers})
	if err != nil {
		return nil, err
	}
	if err := remote.Put(tag, rawTaggable{attRaw, types.OCIManifestSchema1}, ropts...); err != nil {
		return nil, fmt.Errorf("publish: pushing %s: %w", tag, err)
	}
	return &Result{Image: subjectRef, Referrer: refDigest, CosignTag: tag}, nil
}

// rawManifest is an OCI image manifest with the 1.1 fields.
type rawManifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

type rawTaggable struct {
	raw []byte
	mt  types.MediaType
}

func (t rawTaggable) RawManifest() ([]byte, error)        { return t.raw, nil }
func (t rawTaggable) MediaType() (types.MediaType, error) { return t.mt, nil }

func descriptorOf(l v1.Layer) (v1.Descriptor, error) {
	d, err := l.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	sz, err := l.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := l.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: sz}, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}
