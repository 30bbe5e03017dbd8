package dsse

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Bounds on parsed envelopes. An envelope that breaks one is refused before
// anything is decoded or verified.
const (
	// MaxEnvelopeSize bounds the JSON envelope. A manifest of a 5,000-action
	// build with every command line fits comfortably.
	MaxEnvelopeSize = 64 << 20
	// MaxSignatures bounds how many signatures one envelope carries.
	MaxSignatures = 16
	// MaxPayloadTypeLen bounds the payload type (a media type).
	MaxPayloadTypeLen = 256
	// MaxKeyIDLen bounds a signature's keyid.
	MaxKeyIDLen = 512
	// MaxSigLen bounds one decoded signature (RSA-8192 fits).
	MaxSigLen = 2048
)

type wireSignature struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

type wireEnvelope struct {
	PayloadType string          `json:"payloadType"`
	Payload     string          `json:"payload"`
	Signatures  []wireSignature `json:"signatures"`
}

// MarshalJSON writes the envelope in the DSSE JSON form with standard,
// padded base64 (what cosign and the in-toto libraries expect). The base64
// text needs no JSON escaping, so it is written directly: large payloads are
// not scanned twice.
func (e *Envelope) MarshalJSON() ([]byte, error) {
	pt, err := json.Marshal(e.PayloadType)
	if err != nil {
		return nil, err
	}
	n := base64.StdEncoding.EncodedLen(len(e.Payload))
	out := make([]byte, 0, n+len(pt)+64+len(e.Signatures)*200)
	out = append(out, `{"payloadType":`...)
	out = append(out, pt...)
	out = append(out, `,"payload":"`...)
	out = base64.StdEncoding.AppendEncode(out, e.Payload)
	out = append(out, `","signatures":[`...)
	for i, s := range e.Signatures {
		if i > 0 {
			out = append(out, ',')
		}
		id, err := json.Marshal(s.KeyID)
		if err != nil {
			return nil, err
		}
		out = append(out, `{"keyid":`...)
		out = append(out, id...)
		out = append(out, `,"sig":"`...)
		out = base64.StdEncoding.AppendEncode(out, s.Sig)
		out = append(out, `"}`...)
	}
	out = append(out, "]}"...)
	return out, nil
}

// Parse reads one JSON DSSE envelope strictly: exactly one JSON object
// (surrounding white space allowed), no unknown fields, a non-empty
// payloadType, a base64 payload (standard or URL-safe alphabet, padded or
// not), one to MaxSignatures signatures each with a non-empty base64 sig, and
// every bound above. Errors wrap ErrMalformed.
func Parse(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMalformed, len(data), MaxEnvelopeSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w wireEnvelope
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the envelope object", ErrMalformed)
	}
	if w.PayloadType == "" {
		return nil, fmt.Errorf("%w: missing payloadType", ErrMalformed)
	}
	if len(w.PayloadType) > MaxPayloadTypeLen {
		return nil, fmt.Errorf("%w: payloadType is %d bytes, the limit is %d", ErrMalformed, len(w.PayloadType), MaxPayloadTypeLen)
	}
	payload, err := decodeBase64(w.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if len(w.Signatures) == 0 {
		return nil, fmt.Errorf("%w: no signatures", ErrMalformed)
	}
	if len(w.Signatures) > MaxSignatures {
		return nil, fmt.Errorf("%w: %d signatures, the limit is %d", ErrMalformed, len(w.Signatures), MaxSignatures)
	}
	env := &Envelope{PayloadType: w.PayloadType, Payload: payload}
	for i, s := range w.Signatures {
		if len(s.KeyID) > MaxKeyIDLen {
			return nil, fmt.Errorf("%w: signature %d: keyid is %d bytes, the limit is %d", ErrMalformed, i, len(s.KeyID), MaxKeyIDLen)
		}
		if s.Sig == "" {
			return nil, fmt.Errorf("%w: signature %d: empty sig", ErrMalformed, i)
		}
		if len(s.Sig) > MaxSigLen*2 {
			return nil, fmt.Errorf("%w: signature %d: sig is %d bytes, the limit is %d", ErrMalformed, i, len(s.Sig), MaxSigLen*2)
		}
		sig, err := decodeBase64(s.Sig)
		if err != nil {
			return nil, fmt.Errorf("%w: signature %d: sig: %v", ErrMalformed, i, err)
		}
		if len(sig) == 0 || len(sig) > MaxSigLen {
			return nil, fmt.Errorf("%w: signature %d: decoded sig is %d bytes, want 1 to %d", ErrMalformed, i, len(sig), MaxSigLen)
		}
		env.Signatures = append(env.Signatures, Signature{KeyID: s.KeyID, Sig: sig})
	}
	return env, nil
}

// decodeBase64 accepts the standard and the URL-safe alphabet, padded or
// not, as the DSSE spec asks of verifiers.
func decodeBase64(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if !strings.HasSuffix(s, "=") && len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	b, err := enc.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %v", err)
	}
	return b, nil
}
