package publish_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hallmark-build/hallmark/signer/publish"
	"github.com/hallmark-build/hallmark/signer/publish/publishtest"
)

func TestPush(t *testing.T) {
	for _, tc := range []struct {
		name     string
		registry func(testing.TB) string
	}{
		{"InProcessReferrersAPI", func(t testing.TB) string { return publishtest.Registry(t, true) }},
		{"InProcessNoReferrersAPI", func(t testing.TB) string { return publishtest.Registry(t, false) }},
		{"DebianDockerRegistry", publishtest.DockerRegistry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.registry(t)
			ctx := context.Background()
			key := publishtest.NewKey(t)
			dir, dig, size := publishtest.Layout(t, t.TempDir(), publishtest.Image(t))
			env := publishtest.Sign(t, key, publishtest.Facts(dig.Hex, size, time.Now()))
			ref := host + "/team/frontend:v1"

			res, err := publish.Push(ctx, dir, env, ref)
			if err != nil {
				t.Fatalf("Push: %v", err)
			}
			if res.Image.DigestStr() != dig.String() {
				t.Fatalf("pushed %s, want %s", res.Image, dig)
			}
			// The tag resolves to the image.
			d, err := remote.Head(mustRef(t, ref))
			if err != nil || d.Digest != dig {
				t.Fatalf("HEAD %s = %v, %v; want %s", ref, d, err, dig)
			}
			// The referrer is listed (API or tag schema).
			idx, err := remote.Referrers(res.Image)
			if err != nil {
				t.Fatalf("Referrers: %v", err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != res.Referrer.DigestStr() {
				t.Fatalf("referrers = %+v, want one manifest %s", im.Manifests, res.Referrer)
			}
			// (ggcr's in-process registry reports the config media type as
			// artifactType; read the manifest itself.)
			rd, err := remote.Get(res.Referrer)
			if err != nil {
				t.Fatal(err)
			}
			var rm struct {
				ArtifactType string                  `json:"artifactType"`
				Subject      struct{ Digest string } `json:"subject"`
			}
			if err := json.Unmarshal(rd.Manifest, &rm); err != nil || rm.ArtifactType != publish.ArtifactType || rm.Subject.Digest != dig.String() {
				t.Fatalf("referrer manifest %s: artifactType %q subject %q (%v)", rd.Manifest, rm.ArtifactType, rm.Subject.Digest, err)
			}
			// The cosign tag holds the envelope as a DSSE layer with cosign's annotations.
			if res.CosignTag.TagStr() != "sha256-"+dig.Hex+".att" {
				t.Fatalf("cosign tag %s", res.CosignTag)
			}
			img, err := remote.Image(res.CosignTag)
			if err != nil {
				t.Fatalf("reading %s: %v", res.CosignTag, err)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Layers) != 1 || m.Layers[0].MediaType != publish.DSSEMediaType || m.Layers[0].Annotations["predicateType"] != "https://slsa.dev/provenance/v1" {
				t.Fatalf("cosign manifest layers = %+v", m.Layers)
			}
			if _, ok := m.Layers[0].Annotations["dev.cosignproject.cosign/signature"]; !ok {
				t.Fatalf("cosign signature annotation missing: %+v", m.Layers[0].Annotations)
			}
			ls, _ := img.Layers()
			rc, err := ls[0].Compressed()
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != string(env) {
				t.Fatalf("attached envelope differs from the pushed one")
			}

			// Attaching a second envelope keeps the first in the cosign tag.
			env2 := publishtest.Sign(t, publishtest.NewKey(t), publishtest.Facts(dig.Hex, size, time.Now()))
			if _, err := publish.Push(ctx, dir, env2, ref); err != nil {
				t.Fatalf("second Push: %v", err)
			}
			img, _ = remote.Image(res.CosignTag)
			m, _ = img.Manifest()
			if len(m.Layers) != 2 {
				t.Fatalf("after a second attach the cosign tag has %d layers, want 2", len(m.Layers))
			}
			idx, _ = remote.Referrers(res.Image)
			im, _ = idx.IndexManifest()
			if len(im.Manifests) != 2 {
				t.Fatalf("after a second attach there are %d referrers, want 2", len(im.Manifests))
			}
		})
	}
}

func TestPushRefuses(t *testing.T) {
	host := publishtest.Registry(t, true)
	key := publishtest.NewKey(t)
	dir, dig, size := publishtest.Layout(t, t.TempDir(), publishtest.Image(t))
	_, other, otherSize := publishtest.Layout(t, t.TempDir(), publishtest.Image(t))
	for _, tc := range []struct {
		name    string
		env     []byte
		wantErr string
		is      error
	}{
		{"NotSubject", publishtest.Sign(t, key, publishtest.Facts(other.Hex, otherSize, time.Now())), "not among the envelope's", publish.ErrNotSubject},
		{"Garbage", []byte("{}"), "envelope", nil},
		{"NotInToto", mustJSON(t, map[string]any{"payloadType": "text/plain", "payload": "aGk=", "signatures": []any{map[string]string{"sig": "aGk="}}}), "payload type", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := host + "/team/frontend:" + strings.ToLower(tc.name)
			_, err := publish.Push(context.Background(), dir, tc.env, ref)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("Push error = %v, want one mentioning %q", err, tc.wantErr)
			}
			if _, err := remote.Head(mustRef(t, ref)); err == nil {
				t.Fatalf("a refused push wrote %s", ref)
			}
		})
	}
	_ = dig
	_ = size
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustRef(t *testing.T, s string) name.Reference {
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
