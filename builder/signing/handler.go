package signing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/merkle"
	"github.com/hallmark-build/hallmark/builder/scheduler"
	"github.com/hallmark-build/hallmark/signer/signerpb"
)

// Property is the platform property (a Bazel exec_property) that marks an
// action the farm hands to the signer instead of running it.
const Property = "hallmark-sign"

// Environment variables of a signing action's Command: the contract between
// rules/private/manifest.bzl and the farm.
const (
	// EnvStatusFile is the input path of Bazel's stable-status file.
	EnvStatusFile = "HALLMARK_STATUS_FILE"
	// EnvSubjects lists the input paths of the artifacts, one per line.
	EnvSubjects = "HALLMARK_SUBJECTS"
	// EnvTargets lists the labels the user requested, one per line (a claim).
	EnvTargets = "HALLMARK_TARGETS"
)

// WorkspaceStatusHint is the bazelrc line the failure message shows when the
// stable status has no commit.
const WorkspaceStatusHint = `build --workspace_status_command="echo STABLE_HALLMARK_COMMIT $(git rev-parse HEAD)"`

// Manifester is the one signer call the farm makes. *Client implements it.
type Manifester interface {
	MakeManifest(ctx context.Context, req *signerpb.MakeManifestRequest) (*signerpb.MakeManifestResponse, error)
}

var _ Manifester = (*Client)(nil)

// Requested reports whether an action asks to be signed: its platform (the
// Action's, or else the Command's) has the property with value "1" or "true".
func Requested(action *repb.Action, cmd *repb.Command) bool {
	p := action.GetPlatform()
	if p == nil {
		p = cmd.GetPlatform()
	}
	for _, prop := range p.GetProperties() {
		if prop.GetName() == Property {
			v := strings.ToLower(prop.GetValue())
			return v == "1" || v == "true"
		}
	}
	return false
}

// Handler turns signing actions into ActionResults.
type Handler struct {
	signer     Manifester
	cas        blobstore.Store
	dirs       *merkle.Reader
	untenanted string
}

// NewHandler returns a handler that asks signer for manifests and reads and
// writes blobs in cas. untenanted is the tenant name sent for tasks of a
// farm without tenants (the signer must map untenanted records to it).
func NewHandler(signer Manifester, cas blobstore.Store, untenanted string) (*Handler, error) {
	if signer == nil || cas == nil {
		return nil, errors.New("signing: a signer and a CAS are required")
	}
	if untenanted == "" {
		return nil, errors.New("signing: the tenant name for an untenanted farm is required")
	}
	return &Handler{signer: signer, cas: cas, dirs: merkle.NewReader(cas, 10_000), untenanted: untenanted}, nil
}

// failure is an action-level failure: reported to the client as the
// action's stderr with exit code 1, never cached.
type failure struct{ msg string }

func (f *failure) Error() string { return f.msg }

func fail(format string, args ...any) error {
	return &failure{msg: fmt.Sprintf(format, args...)}
}

// Execute signs the task's artifact inputs. The ActionResult has exit code
// 0 and the envelope as the one output file, or exit code 1 and a message on
// stderr saying what was wrong. The error is an infrastructure failure only
// (the CAS could not be written, the context ended).
func (h *Handler) Execute(ctx context.Context, t *scheduler.Task) (*repb.ActionResult, error) {
	start := time.Now()
	md := &repb.ExecutedActionMetadata{
		WorkerStartTimestamp:    timestamppb.New(start),
		ExecutionStartTimestamp: timestamppb.New(start),
	}
	out, env, err := h.sign(ctx, t)
	md.ExecutionCompletedTimestamp = timestamppb.Now()
	md.WorkerCompletedTimestamp = md.ExecutionCompletedTimestamp
	var f *failure
	switch {
	case errors.As(err, &f):
		msg := []byte("hallmark_manifest: " + f.msg + "\n")
		d := digest.OfBytes(msg)
		if err := h.cas.Put(ctx, d, bytes.NewReader(msg)); err != nil {
			return nil, fmt.Errorf("signing: storing stderr: %w", err)
		}
		return &repb.ActionResult{ExitCode: 1, StderrDigest: d.ToProto(), ExecutionMetadata: md}, nil
	case err != nil:
		return nil, err
	}
	d := digest.OfBytes(env)
	if err := h.cas.Put(ctx, d, bytes.NewReader(env)); err != nil {
		return nil, fmt.Errorf("signing: storing the envelope: %w", err)
	}
	return &repb.ActionResult{
		OutputFiles:       []*repb.OutputFile{{Path: out, Digest: d.ToProto()}},
		ExecutionMetadata: md,
	}, nil
}

func envOf(cmd *repb.Command) map[string]string {
	m := map[string]string{}
	for _, e := range cmd.GetEnvironmentVariables() {
		m[e.GetName()] = e.GetValue()
	}
	return m
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// sign returns the output path and the envelope, or a *failure.
func (h *Handler) sign(ctx context.Context, t *scheduler.Task) (string, []byte, error) {
	cmd := t.Command
	outs := cmd.GetOutputPaths()
	if len(outs) == 0 {
		outs = cmd.GetOutputFiles()
	}
	if len(outs) != 1 || len(cmd.GetOutputDirectories()) != 0 {
		return "", nil, fail("a signing action must declare exactly one output file (the envelope), not %d files and %d directories",
			len(outs), len(cmd.GetOutputDirectories()))
	}
	env := envOf(cmd)
	statusPath := env[EnvStatusFile]
	subjects := lines(env[EnvSubjects])
	if statusPath == "" || len(subjects) == 0 {
		return "", nil, fail("the action sets no %s or no %s: it was not declared by hallmark_manifest", EnvStatusFile, EnvSubjects)
	}
	wd := cmd.GetWorkingDirectory()
	rel := func(p string) string {
		if wd == "" {
			return p
		}
		return path.Join(wd, p)
	}
	root, err := digest.FromProto(t.Action.GetInputRootDigest())
	if err != nil {
		return "", nil, fail("invalid input root digest: %v", err)
	}
	files, err := h.walk(ctx, root)
	if err != nil {
		return "", nil, err
	}
	statusDigest, ok := files[rel(statusPath)]
	if !ok {
		return "", nil, fail("the stable-status file %s is not among the action's inputs", statusPath)
	}
	b, err := h.read(ctx, statusDigest)
	if err != nil {
		return "", nil, err
	}
	st, err := ParseStatus(b)
	if err != nil {
		return "", nil, fail("%s: %v", statusPath, err)
	}
	raw, ok := st[CommitKey]
	if !ok || strings.TrimSpace(raw) == "" {
		return "", nil, fail("%s has no %s, so the farm cannot tell the signer which commit your sources claim to come from.\n"+
			"Add this line to your workspace's .bazelrc (it prints the commit of git HEAD):\n  %s",
			statusPath, CommitKey, WorkspaceStatusHint)
	}
	commit, err := ParseCommit(raw)
	if err != nil {
		return "", nil, fail("%s: %v", statusPath, err)
	}
	req := &signerpb.MakeManifestRequest{Tenant: t.Tenant, Commit: commit, Targets: lines(env[EnvTargets])}
	if req.Tenant == "" {
		req.Tenant = h.untenanted
	}
	listed := map[string]bool{rel(statusPath): true}
	seen := map[digest.Digest]bool{}
	for _, s := range subjects {
		p := rel(s)
		d, ok := files[p]
		if !ok {
			return "", nil, fail("subject %s is not a file among the action's inputs", s)
		}
		listed[p] = true
		if seen[d] {
			// Identical content under two names: one subject suffices.
			continue
		}
		seen[d] = true
		req.Artifacts = append(req.Artifacts, &signerpb.Artifact{Name: s, Sha256: d.Hash, SizeBytes: d.Size})
	}
	var extra []string
	for p := range files {
		if !listed[p] {
			extra = append(extra, p)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return "", nil, fail("inputs that are neither subjects nor the stable-status file: %s", strings.Join(extra, ", "))
	}
	resp, err := h.signer.MakeManifest(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
		if errors.Is(err, ErrUnavailable) {
			return "", nil, fail("%v", err)
		}
		return "", nil, fail("the signer refused to sign (%s): %s", status.Code(err), status.Convert(err).Message())
	}
	if len(resp.GetEnvelope()) == 0 {
		return "", nil, fail("the signer returned an empty envelope")
	}
	return outs[0], resp.GetEnvelope(), nil
}

// walk maps every file path of the tree under root to its digest. Symbolic
// links are refused: a subject must be a file.
func (h *Handler) walk(ctx context.Context, root digest.Digest) (map[string]digest.Digest, error) {
	files := map[string]digest.Digest{}
	var visit func(p string, d digest.Digest, depth int) error
	visit = func(p string, d digest.Digest, depth int) error {
		if depth > 256 {
			return fail("the input tree is deeper than 256 levels")
		}
		dir, err := h.dirs.Directory(ctx, d)
		if errors.Is(err, blobstore.ErrNotFound) {
			return fail("the input Directory %s at %q is not in the CAS", d, p)
		}
		if err != nil {
			return fail("reading the input tree at %q: %v", p, err)
		}
		if len(dir.GetSymlinks()) > 0 {
			return fail("the input tree has a symbolic link %s: subjects must be files", path.Join(p, dir.GetSymlinks()[0].GetName()))
		}
		for _, f := range dir.GetFiles() {
			fd, err := digest.FromProto(f.GetDigest())
			if err != nil {
				return fail("input %s: %v", path.Join(p, f.GetName()), err)
			}
			files[path.Join(p, f.GetName())] = fd
			if len(files) > 100_000 {
				return fail("more than 100000 input files")
			}
		}
		for _, c := range dir.GetDirectories() {
			cd, err := digest.FromProto(c.GetDigest())
			if err != nil {
				return fail("input directory %s: %v", path.Join(p, c.GetName()), err)
			}
			if err := visit(path.Join(p, c.GetName()), cd, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit("", root, 0); err != nil {
		return nil, err
	}
	return files, nil
}

func (h *Handler) read(ctx context.Context, d digest.Digest) ([]byte, error) {
	if d.Size > MaxStatusBytes {
		return nil, fail("the stable-status file is %d bytes, the limit is %d", d.Size, MaxStatusBytes)
	}
	rc, err := h.cas.Get(ctx, d, 0)
	if err != nil {
		if errors.Is(err, blobstore.ErrNotFound) {
			return nil, fail("the stable-status file %s is not in the CAS", d)
		}
		return nil, fmt.Errorf("signing: reading the stable-status file: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxStatusBytes+1))
	if err != nil {
		return nil, fmt.Errorf("signing: reading the stable-status file: %w", err)
	}
	if digest.OfBytes(b) != d {
		return nil, fail("the stable-status file in the CAS does not match its digest %s", d)
	}
	return b, nil
}
