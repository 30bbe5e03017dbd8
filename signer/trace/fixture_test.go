package trace_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/execlog"
)

// farm writes a builder data directory with the builder's own packages.
type farm struct {
	tb  testing.TB
	dir string
	cas *blobstore.Disk
	log *execlog.Log
	now time.Time
	// direct writes blobs straight into the CAS layout without the disk
	// store's fsyncs (benchmark setup only).
	direct bool
}

func newFarm(tb testing.TB) *farm {
	tb.Helper()
	dir := tb.TempDir()
	cas, err := blobstore.NewDisk(filepath.Join(dir, "cas"))
	if err != nil {
		tb.Fatal(err)
	}
	l, err := execlog.Open(filepath.Join(dir, "log"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return &farm{tb: tb, dir: dir, cas: cas, log: l, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
}

func (f *farm) put(b []byte) digest.Digest {
	d := digest.OfBytes(b)
	if f.direct {
		p := filepath.Join(f.dir, "cas", d.Hash[:2], d.Hash)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o444); err != nil && !os.IsPermission(err) {
			f.tb.Fatal(err)
		}
		return d
	}
	if err := f.cas.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		f.tb.Fatal(err)
	}
	return d
}

func (f *farm) putMsg(m proto.Message) digest.Digest {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		f.tb.Fatal(err)
	}
	return f.put(b)
}

// tree stores the input root for files (path -> content) and returns its digest.
func (f *farm) tree(files map[string]string) digest.Digest {
	type node struct {
		files map[string]string
		dirs  map[string]*node
	}
	root := &node{files: map[string]string{}, dirs: map[string]*node{}}
	for p, c := range files {
		parts := strings.Split(p, "/")
		n := root
		for _, d := range parts[:len(parts)-1] {
			if n.dirs[d] == nil {
				n.dirs[d] = &node{files: map[string]string{}, dirs: map[string]*node{}}
			}
			n = n.dirs[d]
		}
		n.files[parts[len(parts)-1]] = c
	}
	var store func(n *node) digest.Digest
	store = func(n *node) digest.Digest {
		dir := &repb.Directory{}
		var names []string
		for k := range n.files {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			dir.Files = append(dir.Files, &repb.FileNode{Name: k, Digest: f.put([]byte(n.files[k])).ToProto()})
		}
		names = names[:0]
		for k := range n.dirs {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			dir.Directories = append(dir.Directories, &repb.DirectoryNode{Name: k, Digest: store(n.dirs[k]).ToProto()})
		}
		return f.putMsg(dir)
	}
	return store(root)
}

// run records an executed action with inputs and outputs (path -> content).
func (f *farm) run(mnemonic string, inputs, outputs map[string]string, tenant, invocation string) execlog.Record {
	var outPaths []string
	for p := range outputs {
		outPaths = append(outPaths, p)
	}
	sort.Strings(outPaths)
	cmd := &repb.Command{Arguments: append([]string{"/bin/" + strings.ToLower(mnemonic)}, outPaths...),
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin"}}, OutputPaths: outPaths}
	cd := f.putMsg(cmd)
	root := f.tree(inputs)
	ad := f.putMsg(&repb.Action{CommandDigest: cd.ToProto(), InputRootDigest: root.ToProto()})
	rec := execlog.Record{Tenant: tenant, Action: ad, Command: cd, InputRoot: root, Worker: "w0",
		Platform: []execlog.Property{{Name: "OSFamily", Value: "linux"}},
		Queued:   f.now, Started: f.now.Add(time.Millisecond), Completed: f.now.Add(time.Second),
		Request: &execlog.RequestMetadata{ToolName: "bazel", ToolInvocationID: invocation, ActionMnemonic: mnemonic, TargetID: "//app:" + mnemonic}}
	f.now = f.now.Add(time.Second)
	for _, p := range outPaths {
		rec.Outputs = append(rec.Outputs, execlog.OutputFile{Path: p, Digest: f.put([]byte(outputs[p]))})
	}
	seq, err := f.log.Append(context.Background(), rec)
	if err != nil {
		f.tb.Fatal(err)
	}
	rec.Seq = seq
	return rec
}

func git(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// gitRepo commits files on main and returns the repository and commit.
func gitRepo(tb testing.TB, files map[string]string) (string, string) {
	tb.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		tb.Skip("git is not installed")
	}
	dir := tb.TempDir()
	git(tb, dir, "init", "-q", "-b", "main")
	for p, c := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	git(tb, dir, "add", "-A")
	git(tb, dir, "commit", "-q", "-m", "sources")
	return dir, git(tb, dir, "rev-parse", "HEAD")
}
