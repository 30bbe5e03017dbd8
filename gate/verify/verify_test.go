package verify_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hallmark-build/hallmark/gate/verify"
	"github.com/hallmark-build/hallmark/signer/dsse"
	"github.com/hallmark-build/hallmark/signer/publish"
	"github.com/hallmark-build/hallmark/signer/publish/publishtest"
)

func trustOf(t *testing.T, keys ...*publishtest.Key) verify.StaticTrust {
	var ts verify.StaticTrust
	for _, k := range keys {
		v, err := verify.KeyFromPEM(k.PublicPEM())
		if err != nil {
			t.Fatal(err)
		}
		ts.Verifiers = append(ts.Verifiers, v)
	}
	return ts
}

func TestVerify(t *testing.T) {
	for _, reg := range []struct {
		name  string
		start func(testing.TB) string
	}{
		{"InProcess", func(t testing.TB) string { return publishtest.Registry(t, true) }},
		{"DebianDockerRegistry", publishtest.DockerRegistry},
	} {
		t.Run(reg.name, func(t *testing.T) {
			host := reg.start(t)
			ctx := context.Background()
			key := publishtest.NewKey(t)
			finished := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)

			signed := host + "/team/frontend:signed"
			dir, dig, size := publishtest.Layout(t, t.TempDir(), publishtest.Image(t))
			if _, err := publish.Push(ctx, dir, publishtest.Sign(t, key, publishtest.Facts(dig.Hex, size, finished)), signed); err != nil {
				t.Fatal(err)
			}
			unsigned := host + "/team/frontend:unsigned"
			if err := remote.Write(mustRef(t, unsigned), publishtest.Image(t)); err != nil {
				t.Fatal(err)
			}
			// An image with a validly signed manifest about another digest.
			mismatched := host + "/team/frontend:mismatched"
			img := publishtest.Image(t)
			if err := remote.Write(mustRef(t, mismatched), img); err != nil {
				t.Fatal(err)
			}
			md, _ := img.Digest()
			mt, _ := img.MediaType()
			msz, _ := img.Size()
			otherEnv := publishtest.Sign(t, key, publishtest.Facts(strings.Repeat("cd", 32), 10, finished))
			if _, err := publish.Attach(ctx, mustRef(t, host+"/team/frontend@"+md.String()).(name.Digest), v1.Descriptor{MediaType: mt, Digest: md, Size: msz}, otherEnv, "https://slsa.dev/provenance/v1"); err != nil {
				t.Fatal(err)
			}

			for _, tc := range []struct {
				name    string
				ref     string
				trust   verify.StaticTrust
				wantErr string // in VerifyErrors; empty: verified
			}{
				{"Signed", signed, trustOf(t, key), ""},
				{"SignedByDigest", host + "/team/frontend@" + dig.String(), trustOf(t, key), ""},
				{"SignedOtherKeysToo", signed, trustOf(t, publishtest.NewKey(t), key), ""},
				{"Unsigned", unsigned, trustOf(t, key), "unsigned image"},
				{"UntrustedKey", signed, trustOf(t, publishtest.NewKey(t)), "not a trusted key"},
				{"DigestNotSubject", mismatched, trustOf(t, key), "is not a subject"},
				{"UntrustedBuilder", signed, verify.StaticTrust{Verifiers: trustOf(t, key).Verifiers, Builders: []string{"https://other"}}, "not a trusted builder"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					v, err := verify.New(tc.trust)
					if err != nil {
						t.Fatal(err)
					}
					f, err := v.Verify(ctx, tc.ref)
					if err != nil {
						t.Fatalf("Verify: %v", err)
					}
					if tc.wantErr == "" {
						if len(f.VerifyErrors) > 0 {
							t.Fatalf("VerifyErrors: %v", f.VerifyErrors)
						}
						if f.ImageDigest != dig.String() || f.BuilderID != publishtest.Builder || f.SourceRepository != publishtest.Repository ||
							!f.FinishedOn.Equal(finished) || len(f.ThirdParty) != 1 || !f.ThirdParty[0].Allowlisted || len(f.ClientWritten) != 1 || f.KeyID != key.KeyID() {
							t.Fatalf("facts = %+v", f)
						}
						return
					}
					if !strings.Contains(strings.Join(f.VerifyErrors, "\n"), tc.wantErr) {
						t.Fatalf("VerifyErrors = %q, want one mentioning %q", f.VerifyErrors, tc.wantErr)
					}
				})
			}
		})
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func FuzzEnvelope(f *testing.F) {
	key := publishtest.NewKey(f)
	hash := strings.Repeat("ab", 32)
	good := publishtest.Sign(f, key, publishtest.Facts(hash, 1, time.Unix(1700000000, 0)))
	f.Add(good)
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AA=="}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	v, err := verify.KeyFromPEM(key.PublicPEM())
	if err != nil {
		f.Fatal(err)
	}
	ts := verify.TrustSet{Verifiers: []dsse.Verifier{v}}
	f.Fuzz(func(t *testing.T, b []byte) {
		facts, err := verify.Envelope(b, "sha256:"+hash, ts)
		if err == nil && facts.KeyID != key.KeyID() {
			t.Fatalf("verified without naming the key: %+v", facts)
		}
	})
}
