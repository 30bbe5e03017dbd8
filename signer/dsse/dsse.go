// Package dsse implements Dead Simple Signing Envelopes (DSSE v1.0): the
// pre-authentication encoding (PAE), signing, strict parsing with bounds, and
// verification against public keys.
//
// The spec is https://github.com/secure-systems-lab/dsse/blob/master/protocol.md
// and the JSON envelope format is envelope.md in the same repository.
package dsse

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// PayloadTypeInToto is the payload type of in-toto statements.
const PayloadTypeInToto = "application/vnd.in-toto+json"

// ErrVerification is the category of every signature verification failure.
var ErrVerification = errors.New("dsse: verification failed")

// ErrMalformed is the category of every error for an envelope that does not
// parse or breaks a bound.
var ErrMalformed = errors.New("dsse: malformed envelope")

// Signer signs messages. It is the subset of signer/key's Signer that DSSE
// needs: msg is the PAE of the envelope; the signature scheme (including any
// hashing) is the signer's.
type Signer interface {
	KeyID() string
	Sign(ctx context.Context, msg []byte) ([]byte, error)
}

// Verifier checks one signature over a message.
type Verifier interface {
	// KeyID is the key's id, as Signer.KeyID would return it; it may be empty.
	KeyID() string
	// Verify returns nil if sig is a valid signature of msg.
	Verify(msg, sig []byte) error
}

// PAE returns the pre-authentication encoding of a payload:
//
//	"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
//
// where LEN is the length in bytes as ASCII decimal without leading zeros.
func PAE(payloadType string, payload []byte) []byte {
	tl := strconv.Itoa(len(payloadType))
	pl := strconv.Itoa(len(payload))
	out := make([]byte, 0, len("DSSEv1")+4+len(tl)+len(payloadType)+len(pl)+len(payload))
	out = append(out, "DSSEv1 "...)
	out = append(out, tl...)
	out = append(out, ' ')
	out = append(out, payloadType...)
	out = append(out, ' ')
	out = append(out, pl...)
	out = append(out, ' ')
	out = append(out, payload...)
	return out
}

// Signature is one signature of an envelope.
type Signature struct {
	KeyID string // optional hint, unauthenticated
	Sig   []byte
}

// Envelope is a DSSE envelope with its payload and signatures decoded.
type Envelope struct {
	PayloadType string
	Payload     []byte
	Signatures  []Signature
}

// Sign makes an envelope over payload signed by every signer, in order.
func Sign(ctx context.Context, payloadType string, payload []byte, signers ...Signer) (*Envelope, error) {
	if payloadType == "" {
		return nil, errors.New("dsse: empty payload type")
	}
	if len(signers) == 0 {
		return nil, errors.New("dsse: no signer")
	}
	msg := PAE(payloadType, payload)
	env := &Envelope{PayloadType: payloadType, Payload: append([]byte(nil), payload...)}
	for _, s := range signers {
		sig, err := s.Sign(ctx, msg)
		if err != nil {
			return nil, fmt.Errorf("dsse: signing with key %q: %w", s.KeyID(), err)
		}
		if len(sig) == 0 {
			return nil, fmt.Errorf("dsse: key %q returned an empty signature", s.KeyID())
		}
		env.Signatures = append(env.Signatures, Signature{KeyID: s.KeyID(), Sig: sig})
	}
	return env, nil
}

// Verify checks that at least one signature verifies with one of the
// verifiers and that the payload type is the expected one, and returns the
// payload. A signature whose keyid names a different key than a verifier's is
// not tried with that verifier (keyids are hints, not trust). Errors wrap
// ErrVerification.
func (e *Envelope) Verify(payloadType string, verifiers ...Verifier) ([]byte, error) {
	if e.PayloadType != payloadType {
		return nil, fmt.Errorf("%w: payload type is %q, want %q", ErrVerification, e.PayloadType, payloadType)
	}
	if len(verifiers) == 0 {
		return nil, fmt.Errorf("%w: no verification key given", ErrVerification)
	}
	if len(e.Signatures) == 0 {
		return nil, fmt.Errorf("%w: envelope has no signatures", ErrVerification)
	}
	msg := PAE(e.PayloadType, e.Payload)
	var lastErr error
	for _, s := range e.Signatures {
		for _, v := range verifiers {
			if s.KeyID != "" && v.KeyID() != "" && s.KeyID != v.KeyID() {
				continue
			}
			if err := v.Verify(msg, s.Sig); err != nil {
				lastErr = err
				continue
			}
			return e.Payload, nil
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w: no signature verifies with the given keys (last error: %v)", ErrVerification, lastErr)
	}
	return nil, fmt.Errorf("%w: no signature is by one of the given keys (keyids %s)", ErrVerification, keyIDs(e.Signatures))
}

func keyIDs(ss []Signature) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ", "
		}
		out += strconv.Quote(s.KeyID)
	}
	return out
}
