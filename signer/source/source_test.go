package source_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/signer/source"
)

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// repo makes a working copy with two commits on main and one on a side branch.
func repo(t *testing.T) (dir, c1, c2, side string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir = t.TempDir()
	git(t, dir, "init", "-q", "-b", "main")
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("src/main.go", "package main\n")
	write("src/with space.txt", "spaced\n")
	write("README", "v1\n")
	os.Symlink("main.go", filepath.Join(dir, "src/link.go"))
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "one")
	c1 = git(t, dir, "rev-parse", "HEAD")
	write("README", "v2\n")
	git(t, dir, "commit", "-q", "-am", "two")
	c2 = git(t, dir, "rev-parse", "HEAD")
	git(t, dir, "checkout", "-q", "-b", "side")
	write("README", "side\n")
	git(t, dir, "commit", "-q", "-am", "side")
	side = git(t, dir, "rev-parse", "HEAD")
	git(t, dir, "checkout", "-q", "main")
	write("src/main.go", "package main // changed, not committed\n")
	return dir, c1, c2, side
}

func d(s string) digest.Digest { return digest.OfBytes([]byte(s)) }

func TestCheck(t *testing.T) {
	dir, c1, c2, _ := repo(t)
	ctx := context.Background()
	r, err := source.Open(ctx, dir, "main")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := r.At(ctx, c2)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for _, tc := range []struct {
		name, path string
		d          digest.Digest
		reason     string // "" = accepted
	}{
		{"Committed", "src/main.go", d("package main\n"), ""},
		{"PathWithSpace", "src/with space.txt", d("spaced\n"), ""},
		{"SymlinkFollowed", "src/link.go", d("package main\n"), ""},
		{"LatestContent", "README", d("v2\n"), ""},
		{"OlderContent", "README", d("v1\n"), "different content"},
		{"UncommittedChange", "src/main.go", d("package main // changed, not committed\n"), "different content"},
		{"NewFile", "src/new.go", d("x"), "no such file"},
		{"Directory", "src", d("x"), "no such file"},
		{"Absolute", "/etc/passwd", d("x"), "not a valid"},
		{"Newline", "a\nb", d("x"), "not a valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tr.Check(ctx, tc.path, tc.d)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			var me *source.MismatchError
			if !errors.As(err, &me) || !errors.Is(err, source.ErrMismatch) || !strings.Contains(err.Error(), tc.reason) || me.Path != tc.path {
				t.Fatalf("Check = %v, want a mismatch for %q with %q", err, tc.path, tc.reason)
			}
		})
	}
	// The older commit is on main as well.
	t1, err := r.At(ctx, c1)
	if err != nil {
		t.Fatal(err)
	}
	defer t1.Close()
	if err := t1.Check(ctx, "README", d("v1\n")); err != nil {
		t.Fatalf("README in the first commit: %v", err)
	}
}

func TestAtRefuses(t *testing.T) {
	dir, c1, _, side := repo(t)
	ctx := context.Background()
	// A bare clone works the same way.
	bare := filepath.Join(t.TempDir(), "bare.git")
	git(t, ".", "clone", "-q", "--bare", dir, bare)
	for _, rd := range []string{dir, bare} {
		r, err := source.Open(ctx, rd, "main")
		if err != nil {
			t.Fatal(err)
		}
		blob := git(t, rd, "rev-parse", c1+":README")
		for _, tc := range []struct{ name, commit, reason string }{
			{"NotOnProtectedBranch", side, "not reachable from the protected branch"},
			{"Abbreviated", c1[:12], "not a full commit id"},
			{"HEAD", "HEAD", "not a full commit id"},
			{"Unknown", strings.Repeat("ab", 20), "no such object"},
			{"NotACommit", blob, "not a commit"},
		} {
			t.Run(filepath.Base(rd)+"/"+tc.name, func(t *testing.T) {
				tr, err := r.At(ctx, tc.commit)
				if err == nil {
					tr.Close()
					t.Fatal("At accepted")
				}
				if !errors.Is(err, source.ErrMismatch) || !strings.Contains(err.Error(), tc.reason) {
					t.Fatalf("At = %v, want %q", err, tc.reason)
				}
			})
		}
		if id, err := r.Resolve(ctx, c1[:10]); err != nil || id != c1 {
			t.Fatalf("Resolve(abbrev) = %q, %v", id, err)
		}
	}
	if _, err := source.Open(ctx, t.TempDir(), "main"); err == nil {
		t.Fatal("Open accepted a directory that is not a repository")
	}
	if _, err := source.Open(ctx, dir, "nope"); err == nil || !strings.Contains(err.Error(), "no branch") {
		t.Fatalf("Open with an unknown branch: %v", err)
	}
}
