// Package source checks source files against a git repository: that a file
// with given content exists at a path in a commit, and that the commit is
// "submitted", i.e. reachable from the protected branch.
//
// It runs the git binary: one `git cat-file --batch` process per Tree (one per
// trace), and `git merge-base --is-ancestor` for reachability. Repositories
// may be bare or working copies; only committed content counts, never the
// working tree.
package source

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// ErrMismatch is the category of every "this source is not what was
// claimed" failure: the path is absent from the commit, holds other content,
// or the commit is not on the protected branch. *MismatchError says which.
var ErrMismatch = errors.New("source does not match the repository")

// MismatchError names the path (empty for commit-level failures), the
// expected digest and why the check failed.
type MismatchError struct {
	Commit string
	Path   string
	Digest digest.Digest
	Reason string
}

func (e *MismatchError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("commit %s: %s", e.Commit, e.Reason)
	}
	return fmt.Sprintf("source %q (%s) in commit %s: %s", e.Path, e.Digest, e.Commit, e.Reason)
}

// Is makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

var _ error = (*MismatchError)(nil)

// Repo is a git repository with a protected branch.
type Repo struct {
	git    string
	dir    string
	branch string // full ref, refs/heads/<name>
}

// Open checks that git is installed, that dir is a git repository (bare or
// working copy) and that it has the local branch protectedBranch
// (refs/heads/<protectedBranch>).
func Open(ctx context.Context, dir, protectedBranch string) (*Repo, error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("source: the git binary is needed: %w", err)
	}
	if protectedBranch == "" || strings.HasPrefix(protectedBranch, "-") || strings.ContainsAny(protectedBranch, " \t\n:") {
		return nil, fmt.Errorf("source: invalid protected branch name %q", protectedBranch)
	}
	r := &Repo{git: git, dir: dir, branch: "refs/heads/" + strings.TrimPrefix(protectedBranch, "refs/heads/")}
	if _, err := r.run(ctx, "rev-parse", "--git-dir"); err != nil {
		return nil, fmt.Errorf("source: %s is not a git repository: %w", dir, err)
	}
	if _, err := r.run(ctx, "rev-parse", "--verify", "--quiet", r.branch+"^{commit}"); err != nil {
		return nil, fmt.Errorf("source: repository %s has no branch %s", dir, r.branch)
	}
	return r, nil
}

// Dir returns the repository directory.
func (r *Repo) Dir() string { return r.dir }

// Branch returns the protected branch's full ref name.
func (r *Repo) Branch() string { return r.branch }

func (r *Repo) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.git, append([]string{"-C", r.dir}, args...)...)
	// Ignore user and system configuration, replacement objects and grafts:
	// the check must see the repository's real objects.
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_NO_REPLACE_OBJECTS=1", "GIT_TERMINAL_PROMPT=0")
	return cmd
}

func (r *Repo) run(ctx context.Context, args ...string) (string, error) {
	cmd := r.command(ctx, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if s := strings.TrimSpace(stderr.String()); s != "" {
			return "", fmt.Errorf("git %s: %w: %s", args[0], err, s)
		}
		return "", fmt.Errorf("git %s: %w", args[0], err)
	}
	return strings.TrimSpace(string(out)), nil
}

// IsFullCommitID reports whether s is a full object id: 40 (SHA-1) or 64
// (SHA-256) lower-case hex characters.
func IsFullCommitID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Resolve turns a revision a person typed (HEAD, a branch, an abbreviated
// id) into the full commit id, for user-side tools. The signer's checks take
// full ids only: At refuses anything else.
func (r *Repo) Resolve(ctx context.Context, rev string) (string, error) {
	if rev == "" || strings.HasPrefix(rev, "-") {
		return "", fmt.Errorf("source: invalid revision %q", rev)
	}
	id, err := r.run(ctx, "rev-parse", "--verify", "--quiet", rev+"^{commit}")
	if err != nil || !IsFullCommitID(id) {
		return "", fmt.Errorf("source: %q is not a commit in %s", rev, r.dir)
	}
	return id, nil
}

// At checks that commit (a full lower-case commit id) is a commit of the
// repository reachable from the protected branch, and returns a Tree that
// checks files in it. The caller closes the Tree.
func (r *Repo) At(ctx context.Context, commit string) (*Tree, error) {
	if !IsFullCommitID(commit) {
		return nil, &MismatchError{Commit: commit, Reason: "not a full commit id (40 or 64 lower-case hex characters)"}
	}
	typ, err := r.run(ctx, "cat-file", "-t", commit)
	if err != nil {
		return nil, &MismatchError{Commit: commit, Reason: "no such object in the repository " + r.dir}
	}
	if typ != "commit" {
		return nil, &MismatchError{Commit: commit, Reason: "the object is a " + typ + ", not a commit"}
	}
	cmd := r.command(ctx, "merge-base", "--is-ancestor", commit, r.branch)
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 {
			return nil, &MismatchError{Commit: commit, Reason: "not reachable from the protected branch " + r.branch + " (not submitted)"}
		}
		return nil, fmt.Errorf("source: git merge-base: %w", err)
	}
	cat := r.command(context.WithoutCancel(ctx), "cat-file", "--batch", "--follow-symlinks")
	in, err := cat.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cat.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cat.Start(); err != nil {
		return nil, fmt.Errorf("source: start git cat-file: %w", err)
	}
	return &Tree{commit: commit, cmd: cat, in: bufio.NewWriter(in), inc: in, out: bufio.NewReaderSize(out, 64<<10), memo: map[string]digest.Digest{}}, nil
}

// Tree checks files of one commit. It is safe for concurrent use (checks are
// serialised over the one git process).
type Tree struct {
	commit string
	mu     sync.Mutex
	cmd    *exec.Cmd
	in     *bufio.Writer
	inc    io.Closer
	out    *bufio.Reader
	memo   map[string]digest.Digest // path -> content digest in the commit
	err    error                    // the git process broke
}

// Commit returns the commit the Tree checks against.
func (t *Tree) Commit() string { return t.commit }

// Check verifies that the commit has a regular file (symbolic links inside
// the repository are followed) at path whose content has digest d. path is
// relative to the repository root, with "/" separators.
func (t *Tree) Check(ctx context.Context, path string, d digest.Digest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if path == "" || strings.ContainsAny(path, "\n\x00") || strings.HasPrefix(path, "/") {
		return &MismatchError{Commit: t.commit, Path: path, Digest: d, Reason: "not a valid repository path"}
	}
	got, err := t.content(path)
	if err != nil {
		return err
	}
	if got == (digest.Digest{}) {
		return &MismatchError{Commit: t.commit, Path: path, Digest: d, Reason: "no such file in the commit (a new, uncommitted file?)"}
	}
	if got != d {
		return &MismatchError{Commit: t.commit, Path: path, Digest: d,
			Reason: fmt.Sprintf("the commit has different content (%s): the file was changed and not committed?", got)}
	}
	return nil
}

// content returns the digest of the file at path in the commit, or the zero
// Digest if there is no regular file there.
func (t *Tree) content(path string) (digest.Digest, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d, ok := t.memo[path]; ok {
		return d, nil
	}
	if t.err != nil {
		return digest.Digest{}, t.err
	}
	d, err := t.ask(path)
	if err != nil {
		t.err = fmt.Errorf("source: git cat-file for %q in %s: %w", path, t.commit, err)
		return digest.Digest{}, t.err
	}
	t.memo[path] = d
	return d, nil
}

func (t *Tree) ask(path string) (digest.Digest, error) {
	if _, err := fmt.Fprintf(t.in, "%s:%s\n", t.commit, path); err != nil {
		return digest.Digest{}, err
	}
	if err := t.in.Flush(); err != nil {
		return digest.Digest{}, err
	}
	line, err := t.out.ReadString('\n')
	if err != nil {
		return digest.Digest{}, err
	}
	line = strings.TrimSuffix(line, "\n")
	if strings.HasSuffix(line, " missing") || strings.HasSuffix(line, " ambiguous") {
		return digest.Digest{}, nil
	}
	f := strings.Fields(line)
	switch {
	case len(f) == 3 && (f[1] == "blob" || f[1] == "tree" || f[1] == "commit" || f[1] == "tag"):
		n, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || n < 0 {
			return digest.Digest{}, fmt.Errorf("unexpected reply %q", line)
		}
		h := digest.NewHasher()
		if _, err := io.CopyN(h, t.out, n); err != nil {
			return digest.Digest{}, err
		}
		if b, err := t.out.ReadByte(); err != nil || b != '\n' {
			return digest.Digest{}, fmt.Errorf("reply for %q not terminated", path)
		}
		if f[1] != "blob" {
			return digest.Digest{}, nil
		}
		return h.Digest(), nil
	case len(f) == 2 && (f[0] == "symlink" || f[0] == "dangling" || f[0] == "loop" || f[0] == "notdir"):
		// --follow-symlinks: "<type> <size>\n<name>\n" for a link leaving the
		// repository or a broken one. Not a regular file of the commit.
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || n < 0 {
			return digest.Digest{}, fmt.Errorf("unexpected reply %q", line)
		}
		if _, err := io.CopyN(io.Discard, t.out, n+1); err != nil {
			return digest.Digest{}, err
		}
		return digest.Digest{}, nil
	}
	return digest.Digest{}, fmt.Errorf("unexpected reply %q", line)
}

// Close stops the git process.
func (t *Tree) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inc.Close()
	err := t.cmd.Wait()
	if t.err == nil && err != nil {
		return fmt.Errorf("source: git cat-file: %w", err)
	}
	return nil
}
