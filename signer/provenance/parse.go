package provenance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrInvalid is the category of every error Parse returns.
var ErrInvalid = errors.New("invalid provenance statement")

// Bounds on parsed statements.
const (
	// MaxStatementSize bounds the statement JSON.
	MaxStatementSize = 64 << 20
	// MaxSubjects bounds the number of subjects.
	MaxSubjects = 10000
)

// Parse reads a hallmark statement strictly and validates it: the in-toto
// Statement v1 type, the SLSA v1 predicate type, hallmark's build type, at
// least one subject each with a name and a sha256 digest, a full commit that
// is the same in externalParameters and in the "source" resolved dependency,
// a builder id, farm id and tenant, and a well-formed classification
// summary. Unknown fields are refused. Errors wrap ErrInvalid.
func Parse(data []byte) (*Statement, error) {
	if len(data) > MaxStatementSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalid, len(data), MaxStatementSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s Statement
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the statement", ErrInvalid)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks what Parse checks, on a statement in memory.
func (s *Statement) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if s.Type != StatementType {
		return bad("_type is %q, want %q", clip(s.Type), StatementType)
	}
	if s.PredicateType != PredicateType {
		return bad("predicateType is %q, want %q", clip(s.PredicateType), PredicateType)
	}
	if len(s.Subject) == 0 {
		return bad("no subjects")
	}
	if len(s.Subject) > MaxSubjects {
		return bad("%d subjects, the limit is %d", len(s.Subject), MaxSubjects)
	}
	for i, sub := range s.Subject {
		if sub.Name == "" {
			return bad("subject %d has no name", i)
		}
		if err := checkSHA256(sub.Digest["sha256"]); err != nil {
			return bad("subject %q: %v", clip(sub.Name), err)
		}
	}
	bd := s.Predicate.BuildDefinition
	if bd.BuildType != BuildType {
		return bad("buildType is %q, want %q", clip(bd.BuildType), BuildType)
	}
	if err := checkCommit(bd.ExternalParameters.Source.Commit); err != nil {
		return bad("externalParameters.source: %v", err)
	}
	if bd.InternalParameters.FarmID == "" || bd.InternalParameters.Tenant == "" {
		return bad("internalParameters needs farmId and tenant")
	}
	if len(bd.ResolvedDependencies) == 0 || bd.ResolvedDependencies[0].Name != "source" {
		return bad("the first resolved dependency must be the verified source")
	}
	if got := bd.ResolvedDependencies[0].Digest["gitCommit"]; got != bd.ExternalParameters.Source.Commit {
		return bad("verified commit %q differs from the claimed commit %q", clip(got), bd.ExternalParameters.Source.Commit)
	}
	if s.Predicate.RunDetails.Builder.ID == "" {
		return bad("runDetails.builder.id is empty")
	}
	if _, err := s.Summary(); err != nil {
		return err
	}
	for _, b := range s.Predicate.RunDetails.Byproducts {
		if b.MediaType != ActionMediaType {
			continue
		}
		if err := checkSHA256(b.Digest["sha256"]); err != nil {
			return bad("action byproduct %q: %v", clip(b.Name), err)
		}
		var a ActionAnnotations
		if err := strictUnmarshal(b.Annotations, &a); err != nil {
			return bad("action byproduct %q: %v", clip(b.Name), err)
		}
	}
	return nil
}

// Summary decodes the classification byproduct. A statement has exactly one.
func (s *Statement) Summary() (Summary, error) {
	var found *ResourceDescriptor
	for i, b := range s.Predicate.RunDetails.Byproducts {
		if b.Name == SummaryName {
			if found != nil {
				return Summary{}, fmt.Errorf("%w: more than one %s byproduct", ErrInvalid, SummaryName)
			}
			found = &s.Predicate.RunDetails.Byproducts[i]
		}
	}
	if found == nil {
		return Summary{}, fmt.Errorf("%w: no %s byproduct", ErrInvalid, SummaryName)
	}
	var sum Summary
	if err := strictUnmarshal(found.Annotations, &sum); err != nil {
		return Summary{}, fmt.Errorf("%w: %s: %v", ErrInvalid, SummaryName, err)
	}
	c := sum.Counts
	if c.Generated < 0 || c.Source < 0 || c.ThirdParty < 0 || c.ClientWritten < 0 {
		return Summary{}, fmt.Errorf("%w: negative input count", ErrInvalid)
	}
	if c.ClientWritten != len(sum.ClientWritten) {
		return Summary{}, fmt.Errorf("%w: %d client-written inputs counted, %d listed", ErrInvalid, c.ClientWritten, len(sum.ClientWritten))
	}
	return sum, nil
}

// Actions decodes every action byproduct, in order.
func (s *Statement) Actions() ([]ActionAnnotations, error) {
	var out []ActionAnnotations
	for _, b := range s.Predicate.RunDetails.Byproducts {
		if b.MediaType != ActionMediaType {
			continue
		}
		var a ActionAnnotations
		if err := strictUnmarshal(b.Annotations, &a); err != nil {
			return nil, fmt.Errorf("%w: action byproduct %q: %v", ErrInvalid, clip(b.Name), err)
		}
		out = append(out, a)
	}
	return out, nil
}

// SubjectBySHA256 returns the name of the subject with that sha256 digest.
func (s *Statement) SubjectBySHA256(hash string) (string, bool) {
	for _, sub := range s.Subject {
		if sub.Digest["sha256"] == hash {
			return sub.Name, true
		}
	}
	return "", false
}

func strictUnmarshal(data []byte, v any) error {
	if len(data) == 0 {
		return errors.New("missing annotations")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}

func checkSHA256(h string) error {
	if len(h) != 64 {
		return fmt.Errorf("sha256 digest %q is not 64 hex characters", clip(h))
	}
	for i := 0; i < len(h); i++ {
		if !(h[i] >= '0' && h[i] <= '9' || h[i] >= 'a' && h[i] <= 'f') {
			return fmt.Errorf("sha256 digest %q is not lower-case hex", clip(h))
		}
	}
	return nil
}
