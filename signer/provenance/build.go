package provenance

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// Facts are everything the signer verified about a build. Build turns them
// into a statement without adding anything.
type Facts struct {
	Artifacts  []Artifact // the subjects, in order
	Targets    []string   // requested targets, as the client claimed them
	Repository string     // claimed repository (URL or name); may be empty
	Commit     string     // verified commit (40 or 64 lower-case hex)
	// ProtectedBranch is the branch the commit was verified to be reachable
	// from (e.g. "main"); recorded as the source dependency's annotation
	// {"protectedBranch": ...}. Empty when the signer did not check one.
	ProtectedBranch string
	FarmID          string
	Tenant          string
	BuilderID       string // runDetails.builder.id
	InvocationID    string
	StartedOn       time.Time // earliest start of a traced action; zero if unknown
	FinishedOn      time.Time // latest completion; zero if unknown
	ThirdParty      []ThirdParty
	Actions         []Action
	Counts          Counts
	ClientFiles     []ClientInput
}

// Artifact is one subject.
type Artifact struct {
	Name   string
	Digest digest.Digest
}

// ThirdParty is one external repository the build read.
type ThirdParty struct {
	Name       string        // repository name, e.g. "com_google_protobuf"
	TreeDigest digest.Digest // REAPI Directory digest of external/<name>
	Allowed    bool          // on the allowlist with this digest
}

// Action is one executed action of the traced graph.
type Action struct {
	Digest      digest.Digest
	Mnemonic    string
	Arguments   []string
	Environment []EnvVar
	Outputs     []string
	Platform    []Property
}

// ClientInput is one client-written input file.
type ClientInput struct {
	Path    string
	Digest  digest.Digest
	Content []byte // full content if small; Build drops it above MaxInlineContent
	// SymlinkTarget is set instead of Digest and Content for a symbolic link.
	SymlinkTarget string
}

// Build makes the statement. It checks that the facts are complete (subjects,
// commit, builder id, farm, tenant) and returns an error naming what is
// missing; it never fills a gap with a default.
func Build(f Facts) (*Statement, error) {
	if len(f.Artifacts) == 0 {
		return nil, fmt.Errorf("provenance: no artifacts")
	}
	if err := checkCommit(f.Commit); err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	for _, req := range []struct{ name, v string }{{"builder id", f.BuilderID}, {"farm id", f.FarmID}, {"tenant", f.Tenant}} {
		if req.v == "" {
			return nil, fmt.Errorf("provenance: missing %s", req.name)
		}
	}
	st := &Statement{Type: StatementType, PredicateType: PredicateType}
	for _, a := range f.Artifacts {
		if a.Name == "" {
			return nil, fmt.Errorf("provenance: artifact %s has no name", a.Digest)
		}
		if _, err := digest.New(a.Digest.Hash, a.Digest.Size); err != nil {
			return nil, fmt.Errorf("provenance: artifact %q: %w", a.Name, err)
		}
		st.Subject = append(st.Subject, Subject{Name: a.Name, Digest: map[string]string{"sha256": a.Digest.Hash}})
	}
	bd := &st.Predicate.BuildDefinition
	bd.BuildType = BuildType
	bd.ExternalParameters = ExternalParameters{
		Targets: append([]string(nil), f.Targets...),
		Source:  Source{Repository: f.Repository, Commit: f.Commit},
	}
	bd.InternalParameters = InternalParameters{FarmID: f.FarmID, Tenant: f.Tenant}
	srcDep := ResourceDescriptor{
		Name:   "source",
		URI:    SourceURI(f.Repository),
		Digest: map[string]string{"gitCommit": f.Commit},
	}
	if f.ProtectedBranch != "" {
		ann, err := json.Marshal(SourceAnnotations{ProtectedBranch: f.ProtectedBranch})
		if err != nil {
			return nil, err
		}
		srcDep.Annotations = ann
	}
	bd.ResolvedDependencies = append(bd.ResolvedDependencies, srcDep)
	third := append([]ThirdParty(nil), f.ThirdParty...)
	sort.Slice(third, func(i, j int) bool { return third[i].Name < third[j].Name })
	var unreviewed []string
	for _, tp := range third {
		ann, err := json.Marshal(thirdPartyAnnotations{TreeDigest: tp.TreeDigest.String(), Allowlisted: tp.Allowed})
		if err != nil {
			return nil, err
		}
		bd.ResolvedDependencies = append(bd.ResolvedDependencies, ResourceDescriptor{
			Name:        "external/" + tp.Name,
			URI:         "bazel-external:" + tp.Name,
			Digest:      map[string]string{"sha256": tp.TreeDigest.Hash},
			Annotations: ann,
		})
		if !tp.Allowed {
			unreviewed = append(unreviewed, tp.Name)
		}
	}
	rd := &st.Predicate.RunDetails
	rd.Builder.ID = f.BuilderID
	rd.Metadata.InvocationID = f.InvocationID
	if !f.StartedOn.IsZero() {
		t := f.StartedOn.UTC()
		rd.Metadata.StartedOn = &t
	}
	if !f.FinishedOn.IsZero() {
		t := f.FinishedOn.UTC()
		rd.Metadata.FinishedOn = &t
	}
	for _, a := range f.Actions {
		args := a.Arguments
		if args == nil {
			args = []string{}
		}
		ann, err := json.Marshal(ActionAnnotations{
			Mnemonic: a.Mnemonic, Arguments: args, Environment: a.Environment, Outputs: a.Outputs, Platform: a.Platform,
		})
		if err != nil {
			return nil, err
		}
		rd.Byproducts = append(rd.Byproducts, ResourceDescriptor{
			Name:        "action:" + a.Digest.String(),
			Digest:      map[string]string{"sha256": a.Digest.Hash},
			MediaType:   ActionMediaType,
			Annotations: ann,
		})
	}
	sum := Summary{Counts: f.Counts, ClientWritten: []ClientFile{}, UnreviewedThirdParty: unreviewed}
	for _, c := range f.ClientFiles {
		if c.SymlinkTarget != "" {
			sum.ClientWritten = append(sum.ClientWritten, ClientFile{Path: c.Path, SymlinkTarget: c.SymlinkTarget})
			continue
		}
		cf := ClientFile{Path: c.Path, Digest: c.Digest.String()}
		if len(c.Content) <= MaxInlineContent && int64(len(c.Content)) == c.Digest.Size {
			cf.Content = c.Content
		}
		sum.ClientWritten = append(sum.ClientWritten, cf)
	}
	ann, err := json.Marshal(sum)
	if err != nil {
		return nil, err
	}
	rd.Byproducts = append(rd.Byproducts, ResourceDescriptor{Name: SummaryName, MediaType: SummaryMediaType, Annotations: ann})
	return st, nil
}

// SourceURI is the resolvedDependencies URI of the source repository:
// "git+" followed by the repository, or "git" if the repository is unnamed.
func SourceURI(repository string) string {
	if repository == "" {
		return "git"
	}
	return "git+" + repository
}

// SourceAnnotations are the annotations of the "source" resolved
// dependency.
type SourceAnnotations struct {
	// ProtectedBranch is the branch (short name, e.g. "main") the commit was
	// verified to be reachable from.
	ProtectedBranch string `json:"protectedBranch"`
}

type thirdPartyAnnotations struct {
	TreeDigest  string `json:"treeDigest"`
	Allowlisted bool   `json:"allowlisted"`
}

// Marshal returns the statement's canonical JSON: the payload of the DSSE
// envelope.
func (s *Statement) Marshal() ([]byte, error) { return json.Marshal(s) }

func checkCommit(c string) error {
	if len(c) != 40 && len(c) != 64 {
		return fmt.Errorf("commit %q is not a full 40 or 64 character hex object name", clip(c))
	}
	for i := 0; i < len(c); i++ {
		if !(c[i] >= '0' && c[i] <= '9' || c[i] >= 'a' && c[i] <= 'f') {
			return fmt.Errorf("commit %q is not lower-case hex", clip(c))
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
