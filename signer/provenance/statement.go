// Package provenance turns verified build facts into an in-toto Statement v1
// carrying SLSA v1 provenance, and parses and validates such statements.
//
// It is pure: Build takes Facts and returns a Statement; nothing here reads
// files, the farm's records or the clock. docs/manifest.md describes every
// field.
package provenance

import (
	"encoding/json"
	"time"
)

// URIs that identify hallmark's manifest format.
const (
	// StatementType is the in-toto Statement v1 type.
	StatementType = "https://in-toto.io/Statement/v1"
	// PredicateType is SLSA provenance v1.
	PredicateType = "https://slsa.dev/provenance/v1"
	// BuildType is hallmark's build type: a Bazel build executed remotely on
	// a hallmark farm, traced by the signer to its sources. Its parameters
	// are ExternalParameters and InternalParameters below.
	BuildType = "https://hallmark.build/bazel-remote/v1"
	// ActionMediaType is the mediaType of a byproduct that describes one
	// executed action (annotations: ActionAnnotations).
	ActionMediaType = "application/vnd.hallmark.action.v1+json"
	// SummaryMediaType is the mediaType of the byproduct that summarises
	// the input classification (annotations: Summary).
	SummaryMediaType = "application/vnd.hallmark.classification.v1+json"
	// SummaryName is the name of the classification byproduct.
	SummaryName = "hallmark:classification"
)

// Statement is an in-toto Statement v1 with a SLSA v1 provenance predicate.
type Statement struct {
	Type          string     `json:"_type"`
	Subject       []Subject  `json:"subject"`
	PredicateType string     `json:"predicateType"`
	Predicate     Provenance `json:"predicate"`
}

// Subject is one artifact the statement is about.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Provenance is the SLSA v1 provenance predicate.
type Provenance struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition says what was built and from what.
type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   ExternalParameters   `json:"externalParameters"`
	InternalParameters   InternalParameters   `json:"internalParameters"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies"`
}

// ExternalParameters are what the client asked for: the requested targets
// and the source it claims. The claimed commit is verified before signing
// and then also appears in ResolvedDependencies.
type ExternalParameters struct {
	Targets []string `json:"targets,omitempty"`
	Source  Source   `json:"source"`
}

// Source is a git repository and commit.
type Source struct {
	Repository string `json:"repository,omitempty"`
	Commit     string `json:"commit"`
}

// InternalParameters are set by the farm, not the client.
type InternalParameters struct {
	FarmID string `json:"farmId"`
	Tenant string `json:"tenant"`
}

// ResourceDescriptor is the in-toto v1 ResourceDescriptor.
type ResourceDescriptor struct {
	Name        string            `json:"name,omitempty"`
	URI         string            `json:"uri,omitempty"`
	Digest      map[string]string `json:"digest,omitempty"`
	MediaType   string            `json:"mediaType,omitempty"`
	Content     []byte            `json:"content,omitempty"`
	Annotations json.RawMessage   `json:"annotations,omitempty"`
}

// RunDetails says who built it and when.
type RunDetails struct {
	Builder    Builder              `json:"builder"`
	Metadata   Metadata             `json:"metadata"`
	Byproducts []ResourceDescriptor `json:"byproducts,omitempty"`
}

// Builder identifies the build platform.
type Builder struct {
	ID string `json:"id"`
}

// Metadata describes the invocation.
type Metadata struct {
	InvocationID string     `json:"invocationId,omitempty"`
	StartedOn    *time.Time `json:"startedOn,omitempty"`
	FinishedOn   *time.Time `json:"finishedOn,omitempty"`
}

// ActionAnnotations are the annotations of an action byproduct: the full
// parameters of one executed action.
type ActionAnnotations struct {
	Mnemonic    string   `json:"mnemonic,omitempty"`
	Arguments   []string `json:"arguments"`
	Environment []EnvVar `json:"environment,omitempty"`
	Outputs     []string `json:"outputs,omitempty"`
	// Platform holds the action's platform properties, in order.
	Platform []Property `json:"platform,omitempty"`
}

// EnvVar is one environment variable of an action, in Command order.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Property is one platform property.
type Property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Summary is the annotation of the classification byproduct.
type Summary struct {
	// Counts holds the number of input files per class, over every action
	// (a file shared by many actions counts once per path and digest).
	Counts Counts `json:"counts"`
	// ClientWritten lists every client-written input.
	ClientWritten []ClientFile `json:"clientWritten"`
	// UnreviewedThirdParty lists the third-party repositories not on an
	// allowlist (empty when an allowlist is required).
	UnreviewedThirdParty []string `json:"unreviewedThirdParty,omitempty"`
}

// Counts holds the number of input files per class.
type Counts struct {
	Generated     int `json:"generated"`
	Source        int `json:"source"`
	ThirdParty    int `json:"thirdParty"`
	ClientWritten int `json:"clientWritten"`
}

// Total is the number of classified input files.
func (c Counts) Total() int { return c.Generated + c.Source + c.ThirdParty + c.ClientWritten }

// ClientFile is an input that the Bazel client wrote itself under
// bazel-out/ and that no farm action produced.
type ClientFile struct {
	Path   string `json:"path"`
	Digest string `json:"digest,omitempty"` // "sha256hex/size"; empty for a symbolic link
	// SymlinkTarget is set instead of Digest for a symbolic link.
	SymlinkTarget string `json:"symlinkTarget,omitempty"`
	// Content is the file's content when it is at most MaxInlineContent bytes.
	Content []byte `json:"content,omitempty"`
}

// MaxInlineContent bounds the content of a client-written file carried in
// the manifest.
const MaxInlineContent = 4096
