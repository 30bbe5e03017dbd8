package policy

import "time"

// Facts is everything the gate learned about one image for one identity: the
// verification outcome and, when verification succeeded, what the signed
// manifest says. It is plain data so that Evaluate stays pure.
type Facts struct {
	// Identity is the service identity the workload will run as.
	Identity string `json:"identity"`
	// Image is the reference as requested; ImageDigest is what it resolved to.
	Image       string `json:"image"`
	ImageDigest string `json:"imageDigest,omitempty"`
	// VerifyErrors are the reasons verification failed (no manifest, bad
	// signature, untrusted key, image digest not a subject, ...). When it is
	// not empty the manifest fields below are not trustworthy and are empty.
	VerifyErrors []string `json:"verifyErrors,omitempty"`
	// KeyID names the trusted key that verified the envelope.
	KeyID string `json:"keyId,omitempty"`

	BuilderID        string    `json:"builderId,omitempty"`
	SourceRepository string    `json:"sourceRepository,omitempty"`
	SourceCommit     string    `json:"sourceCommit,omitempty"`
	ProtectedBranch  string    `json:"protectedBranch,omitempty"` // the branch the commit was verified on; empty if not recorded
	Targets          []string  `json:"targets,omitempty"`         // requested Bazel targets
	SourcePaths      []string  `json:"sourcePaths,omitempty"`     // source paths, when the manifest lists them
	ThirdParty       []Dep     `json:"thirdParty,omitempty"`
	ClientWritten    []Input   `json:"clientWritten,omitempty"`
	FinishedOn       time.Time `json:"finishedOn,omitzero"`
	InvocationID     string    `json:"invocationId,omitempty"`
	Tenant           string    `json:"tenant,omitempty"`

	// Justification is the break-glass justification the deploy request
	// carried, if any.
	Justification string `json:"justification,omitempty"`
}

// Dep is a third-party dependency as the manifest records it.
type Dep struct {
	Name        string `json:"name"`
	Digest      string `json:"digest"` // "sha256:<hex>"
	Allowlisted bool   `json:"allowlisted,omitempty"`
}

// Input is a client-written input disclosed by the manifest.
type Input struct {
	Path   string `json:"path"`
	Digest string `json:"digest,omitempty"`
}
