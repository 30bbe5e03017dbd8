package dsse_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/hallmark-build/hallmark/signer/dsse"
)

type ecSigner struct {
	priv *ecdsa.PrivateKey
	id   string
}

func (s ecSigner) KeyID() string { return s.id }
func (s ecSigner) Sign(_ context.Context, msg []byte) ([]byte, error) {
	sum := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, s.priv, sum[:])
}

func newSigner(t testing.TB) (ecSigner, dsse.Verifier) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := dsse.KeyID(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := dsse.NewVerifier(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return ecSigner{priv: priv, id: id}, v
}

func TestPAE(t *testing.T) {
	for _, tc := range []struct {
		name, typ, body, want string
	}{
		{"SpecExample", "http://example.com/HelloWorld", "hello world", "DSSEv1 29 http://example.com/HelloWorld 11 hello world"},
		{"Empty", "", "", "DSSEv1 0  0 "},
		{"BinaryBody", "t", "\x00 \n", "DSSEv1 1 t 3 \x00 \n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(dsse.PAE(tc.typ, []byte(tc.body))); got != tc.want {
				t.Errorf("PAE = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSignVerify(t *testing.T) {
	ctx := context.Background()
	s, v := newSigner(t)
	_, other := newSigner(t)
	payload := []byte(`{"_type":"x"}`)
	env, err := dsse.Sign(ctx, dsse.PayloadTypeInToto, payload, s)
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("RoundTrip", func(t *testing.T) {
		parsed, err := dsse.Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parsed.Verify(dsse.PayloadTypeInToto, v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(payload) {
			t.Errorf("payload = %q, want %q", got, payload)
		}
		if parsed.Signatures[0].KeyID != s.id {
			t.Errorf("keyid = %q, want %q", parsed.Signatures[0].KeyID, s.id)
		}
	})
	t.Run("OtherKeyRefused", func(t *testing.T) {
		if _, err := env.Verify(dsse.PayloadTypeInToto, other); !errors.Is(err, dsse.ErrVerification) {
			t.Errorf("err = %v, want ErrVerification", err)
		}
	})
	t.Run("TamperedPayloadRefused", func(t *testing.T) {
		bad := *env
		bad.Payload = []byte(`{"_type":"y"}`)
		if _, err := bad.Verify(dsse.PayloadTypeInToto, v); !errors.Is(err, dsse.ErrVerification) {
			t.Errorf("err = %v, want ErrVerification", err)
		}
	})
	t.Run("TamperedTypeRefused", func(t *testing.T) {
		bad := *env
		bad.PayloadType = "text/plain"
		if _, err := bad.Verify("text/plain", v); !errors.Is(err, dsse.ErrVerification) {
			t.Errorf("err = %v, want ErrVerification", err)
		}
	})
	t.Run("WrongExpectedType", func(t *testing.T) {
		if _, err := env.Verify("application/json", v); !errors.Is(err, dsse.ErrVerification) {
			t.Errorf("err = %v, want ErrVerification", err)
		}
	})
	t.Run("NoKeyID", func(t *testing.T) {
		bad := *env
		bad.Signatures = []dsse.Signature{{Sig: env.Signatures[0].Sig}}
		if _, err := bad.Verify(dsse.PayloadTypeInToto, v); err != nil {
			t.Errorf("a signature without keyid should still verify: %v", err)
		}
	})
}

func TestVerifyEd25519(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v, err := dsse.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	env := &dsse.Envelope{PayloadType: "t", Payload: []byte("p")}
	env.Signatures = []dsse.Signature{{Sig: ed25519.Sign(priv, dsse.PAE("t", []byte("p")))}}
	if _, err := env.Verify("t", v); err != nil {
		t.Fatal(err)
	}
}

func TestParse(t *testing.T) {
	sig := "MEUCIQ=="
	for _, tc := range []struct {
		name, in, wantErr string
	}{
		{"Valid", `{"payloadType":"t","payload":"aGk=","signatures":[{"keyid":"k","sig":"` + sig + `"}]}`, ""},
		{"URLSafeUnpadded", `{"payloadType":"t","payload":"_-8","signatures":[{"keyid":"","sig":"MEUCIQ"}]}`, ""},
		{"NotJSON", `nope`, "invalid character"},
		{"Trailing", `{"payloadType":"t","payload":"aGk=","signatures":[{"sig":"` + sig + `"}]} {}`, "trailing data"},
		{"UnknownField", `{"payloadType":"t","payload":"aGk=","extra":1,"signatures":[{"sig":"` + sig + `"}]}`, "unknown field"},
		{"NoType", `{"payload":"aGk=","signatures":[{"sig":"` + sig + `"}]}`, "missing payloadType"},
		{"BadPayload", `{"payloadType":"t","payload":"!!","signatures":[{"sig":"` + sig + `"}]}`, "payload: not base64"},
		{"NoSignatures", `{"payloadType":"t","payload":"aGk=","signatures":[]}`, "no signatures"},
		{"EmptySig", `{"payloadType":"t","payload":"aGk=","signatures":[{"sig":""}]}`, "empty sig"},
		{"LongType", `{"payloadType":"` + strings.Repeat("a", 300) + `","payload":"","signatures":[{"sig":"` + sig + `"}]}`, "payloadType is 300 bytes"},
		{"TooManySigs", `{"payloadType":"t","payload":"","signatures":[` + strings.Repeat(`{"sig":"`+sig+`"},`, 16) + `{"sig":"` + sig + `"}]}`, "17 signatures"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dsse.Parse([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, dsse.ErrMalformed) {
				t.Fatalf("Parse error = %v, want ErrMalformed containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestKeyIDStable(t *testing.T) {
	s, v := newSigner(t)
	if s.id != v.KeyID() || !strings.HasPrefix(s.id, "SHA256:") || len(s.id) != 50 {
		t.Fatalf("key ids differ or are malformed: %q %q", s.id, v.KeyID())
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"payloadType":"t","payload":"aGk=","signatures":[{"keyid":"k","sig":"MEUCIQ=="}]}`))
	f.Add([]byte(`{"payloadType":"t","payload":"_-8","signatures":[{"sig":"MEUCIQ"}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := dsse.Parse(data)
		if err != nil {
			return
		}
		// Whatever parses must re-encode and parse to the same envelope.
		out, err := env.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		again, err := dsse.Parse(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if again.PayloadType != env.PayloadType || string(again.Payload) != string(env.Payload) || len(again.Signatures) != len(env.Signatures) {
			t.Fatalf("round trip changed the envelope")
		}
	})
}

func FuzzPAE(f *testing.F) {
	f.Add("http://example.com/HelloWorld", []byte("hello world"))
	f.Add("", []byte{})
	f.Add("a b", []byte("1 2"))
	f.Fuzz(func(t *testing.T, typ string, body []byte) {
		got := dsse.PAE(typ, body)
		if !strings.HasPrefix(string(got), "DSSEv1 ") || !strings.HasSuffix(string(got), string(body)) {
			t.Fatalf("PAE(%q, %q) = %q", typ, body, got)
		}
		// Distinct inputs must give distinct encodings: the lengths pin the split.
		if len(typ) > 0 {
			other := dsse.PAE(typ[:len(typ)-1], append([]byte(typ[len(typ)-1:]), body...))
			if string(other) == string(got) {
				t.Fatalf("PAE is ambiguous for %q/%q", typ, body)
			}
		}
	})
}
