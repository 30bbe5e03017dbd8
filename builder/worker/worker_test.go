package worker_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/sandbox"
	"github.com/hallmark-build/hallmark/builder/worker"
	"github.com/hallmark-build/hallmark/builder/worker/workertest"
)

type fixture struct {
	dir   string
	store blobstore.Store
	w     *worker.Worker
}

func newFixture(t *testing.T, store func(dir string) blobstore.Store, opts ...worker.Option) *fixture {
	t.Helper()
	if _, err := exec.LookPath("bwrap"); err != nil {
		t.Skip("bwrap not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("the worker runs sandboxes as other uids and needs root")
	}
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cas := filepath.Join(dir, "cas")
	if err := os.Mkdir(cas, 0o700); err != nil {
		t.Fatal(err)
	}
	r, err := sandbox.NewBwrap(sandbox.WithCgroupName("hallmark-worker-test-" + strings.ReplaceAll(t.Name(), "/", "-")))
	if err != nil {
		t.Fatal(err)
	}
	s := store(cas)
	opts = append([]worker.Option{worker.WithSlots(2), worker.WithUIDBase(62000)}, opts...)
	w, err := worker.New(filepath.Join(dir, "worker"), s, r, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, store: s, w: w}
}

func dirStore(dir string) blobstore.Store { return &workertest.DirStore{Dir: dir} }
func memStore(string) blobstore.Store     { return &workertest.MemStore{} }

var stdInputs = map[string]workertest.File{
	"tools/gen.sh": {Content: "#!/bin/sh\nset -e\nmkdir -p out/dir/deep\ncp src/in.txt out/sub/a.txt\nprintf '#!/bin/sh\\necho hi\\n' > out/bin/tool\nchmod 755 out/bin/tool\necho nested > out/dir/deep/n.txt\nln -s ../sub/a.txt out/dir/link\necho done\necho warn >&2\n", Executable: true},
	"src/in.txt":   {Content: "input\n"},
	"src/link":     {Symlink: "in.txt"},
}

func (f *fixture) action(t *testing.T, files map[string]workertest.File, cmd *repb.Command, timeout time.Duration) *repb.Action {
	t.Helper()
	a := &repb.Action{
		CommandDigest:   workertest.PutMessage(f.store, cmd).ToProto(),
		InputRootDigest: workertest.PutTree(f.store, files).ToProto(),
	}
	if timeout > 0 {
		a.Timeout = durationpb.New(timeout)
	}
	return a
}

func (f *fixture) run(t *testing.T, script string, timeout time.Duration) worker.Outcome {
	t.Helper()
	cmd := &repb.Command{
		Arguments:            []string{"/bin/bash", "-c", script},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin:/usr/bin"}},
		OutputFiles:          []string{"out/x"},
	}
	out, err := f.w.Execute(context.Background(), worker.Job{Action: f.action(t, stdInputs, cmd, timeout), InlineStdioLimit: 1 << 10})
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	return out
}

func (f *fixture) blob(t *testing.T, d *repb.Digest) []byte {
	t.Helper()
	dg, err := digest.FromProto(d)
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.store.Get(context.Background(), dg, 0)
	if err != nil {
		t.Fatalf("Get %s: %v", dg, err)
	}
	defer r.Close()
	b := make([]byte, dg.Size)
	if _, err := r.Read(b); err != nil && dg.Size > 0 {
		t.Fatal(err)
	}
	return b
}

func TestExecuteGenrule(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(string) blobstore.Store
		v21   bool
	}{
		{"linker store, REAPI 2.0", dirStore, false},
		{"linker store, REAPI 2.1", dirStore, true},
		{"plain store, REAPI 2.0", memStore, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.store)
			cmd := &repb.Command{
				Arguments:            []string{"tools/gen.sh"},
				EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin:/usr/bin"}},
			}
			if tc.v21 {
				cmd.OutputPaths = []string{"missing", "out/bin/tool", "out/dir", "out/sub/a.txt"}
			} else {
				cmd.OutputFiles = []string{"missing", "out/bin/tool", "out/sub/a.txt"}
				cmd.OutputDirectories = []string{"out/dir"}
			}
			out, err := f.w.Execute(context.Background(), worker.Job{Action: f.action(t, stdInputs, cmd, 0), InlineStdioLimit: 100})
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			ar := out.Result
			if ar.ExitCode != 0 {
				t.Fatalf("exit %d, stderr %q", ar.ExitCode, f.blob(t, ar.StderrDigest))
			}
			if got := string(f.blob(t, ar.StdoutDigest)); got != "done\n" || string(ar.StdoutRaw) != got {
				t.Errorf("stdout %q raw %q", got, ar.StdoutRaw)
			}
			if got := string(f.blob(t, ar.StderrDigest)); got != "warn\n" {
				t.Errorf("stderr %q", got)
			}
			files := map[string]*repb.OutputFile{}
			for _, of := range ar.OutputFiles {
				files[of.Path] = of
			}
			if len(files) != 2 {
				t.Errorf("output files %v, want 2 (missing outputs are absent)", ar.OutputFiles)
			}
			if a := files["out/sub/a.txt"]; a == nil || a.IsExecutable || a.Digest.Hash != digest.OfBytes([]byte("input\n")).Hash {
				t.Errorf("out/sub/a.txt = %v", a)
			}
			if tool := files["out/bin/tool"]; tool == nil || !tool.IsExecutable || string(f.blob(t, tool.Digest)) != "#!/bin/sh\necho hi\n" {
				t.Errorf("out/bin/tool = %v", tool)
			}
			if len(ar.OutputDirectories) != 1 {
				t.Fatalf("output directories %v", ar.OutputDirectories)
			}
			var tree repb.Tree
			if err := proto.Unmarshal(f.blob(t, ar.OutputDirectories[0].TreeDigest), &tree); err != nil {
				t.Fatal(err)
			}
			if len(tree.Root.Directories) != 1 || tree.Root.Directories[0].Name != "deep" || len(tree.Root.Symlinks) != 1 ||
				tree.Root.Symlinks[0].Target != "../sub/a.txt" || len(tree.Children) != 1 || tree.Children[0].Files[0].Name != "n.txt" {
				t.Errorf("tree %v", &tree)
			}
			md := ar.ExecutionMetadata
			if md.GetWorker() == "" || md.ExecutionCompletedTimestamp.AsTime().Before(md.ExecutionStartTimestamp.AsTime()) || md.OutputUploadCompletedTimestamp == nil {
				t.Errorf("metadata %v", md)
			}
			// Outputs in the CAS are root-owned and read-only.
			if ds, ok := f.store.(*workertest.DirStore); ok {
				fi, err := os.Stat(filepath.Join(ds.Dir, files["out/bin/tool"].Digest.Hash))
				if err != nil || fi.Mode().Perm() != 0o444 {
					t.Errorf("CAS file of output: %v %v", fi.Mode(), err)
				}
			}
			if ents, _ := os.ReadDir(filepath.Join(f.dir, "worker", "actions")); len(ents) != 0 {
				t.Errorf("action directories left behind: %v", ents)
			}
		})
	}
}

func TestExecuteOutputSymlinks(t *testing.T) {
	f := newFixture(t, dirStore)
	for _, tc := range []struct {
		name                       string
		cmd                        *repb.Command
		wantAll, wantFile, wantDir int
	}{
		{"2.0 file", &repb.Command{OutputFiles: []string{"o/l"}}, 0, 1, 0},
		{"2.1 path", &repb.Command{OutputPaths: []string{"o/l", "o/m"}}, 2, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cmd.Arguments = []string{"/bin/sh", "-c", "ln -s ../src/in.txt o/l; ln -s ../src o/m 2>/dev/null; true"}
			out, err := f.w.Execute(context.Background(), worker.Job{Action: f.action(t, stdInputs, tc.cmd, 0)})
			if err != nil {
				t.Fatal(err)
			}
			ar := out.Result
			if len(ar.OutputSymlinks) != tc.wantAll || len(ar.OutputFileSymlinks) != tc.wantFile || len(ar.OutputDirectorySymlinks) != tc.wantDir {
				t.Errorf("symlinks %v / %v / %v", ar.OutputSymlinks, ar.OutputFileSymlinks, ar.OutputDirectorySymlinks)
			}
			if len(ar.OutputFileSymlinks) > 0 && ar.OutputFileSymlinks[0].Target != "../src/in.txt" {
				t.Errorf("target %q", ar.OutputFileSymlinks[0].Target)
			}
		})
	}
}

func TestExecuteIsolation(t *testing.T) {
	f := newFixture(t, dirStore)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	actions := filepath.Join(f.dir, "worker", "actions")

	// A running action whose directory the others try to see.
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		close(started)
		f.run(t, "sleep 3", 0)
	}()
	<-started
	time.Sleep(300 * time.Millisecond)
	ents, _ := os.ReadDir(actions)
	if len(ents) == 0 {
		t.Fatal("the background action's directory does not exist")
	}
	other := filepath.Join(actions, ents[0].Name(), "root")

	for _, tc := range []struct{ name, script string }{
		{"tcp to the farm's port", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", port)},
		{"write an input directory", "echo x > src/new"},
		{"modify an input file", "echo x >> src/in.txt"},
		{"chmod an input file", "chmod 777 src/in.txt"},
		{"replace an input file in an output directory", "mkdir -p out && echo x > out/x && chmod 777 ../execroot/tools/gen.sh"},
		{"ls /root", "ls /root"},
		{"list another action's directory", "ls " + other},
		{"list the worker directory", "ls " + actions},
		{"read the farm's CAS", "ls " + filepath.Join(f.dir, "cas")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := f.run(t, tc.script, 0)
			if out.Result.ExitCode == 0 {
				t.Errorf("%q succeeded in the sandbox", tc.script)
			}
		})
	}
	// The CAS copy of the input is untouched.
	if got := string(f.blob(t, digest.OfBytes([]byte("input\n")).ToProto())); got != "input\n" {
		t.Errorf("CAS input changed to %q", got)
	}
	wg.Wait()
}

func TestExecuteLimits(t *testing.T) {
	f := newFixture(t, dirStore, worker.WithLimits(sandbox.Limits{Processes: 64, MemoryBytes: 256 << 20, FileSizeBytes: 1 << 20}))
	t.Run("fork bomb", func(t *testing.T) {
		out := f.run(t, "f() { f | f & }; f; sleep 1; exit 0", 20*time.Second)
		if !out.Sandbox.ProcessLimitHit {
			t.Errorf("fork bomb did not hit the process limit: %+v", out.Sandbox)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		marker := fmt.Sprintf("hallmark-worker-timeout-%d", time.Now().UnixNano())
		out := f.run(t, "bash -c \"sleep 100; : "+marker+"\" & sleep 100; : "+marker, 300*time.Millisecond)
		if !out.TimedOut || out.Result.ExitCode == 0 {
			t.Errorf("outcome %+v, want timed out", out.Sandbox)
		}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(b), marker) {
				t.Errorf("process %s survived the timeout: %q", e.Name(), b)
			}
		}
	})
	t.Run("output file size", func(t *testing.T) {
		out := f.run(t, "mkdir -p out; head -c 2000000 /dev/zero > out/x", 0)
		if out.Result.ExitCode == 0 {
			t.Errorf("wrote 2 MB with a 1 MiB file size limit")
		}
	})
}

func TestExecuteRejects(t *testing.T) {
	f := newFixture(t, dirStore)
	okCmd := &repb.Command{Arguments: []string{"/bin/true"}}
	put := func(d *repb.Directory) digest.Digest { return workertest.PutMessage(f.store, d) }
	file := workertest.PutBytes(f.store, []byte("x")).ToProto()
	sub := put(&repb.Directory{}).ToProto()
	for _, tc := range []struct {
		name string
		root func() *repb.Digest
		cmd  *repb.Command
		code codes.Code
	}{
		{"dot-dot name", func() *repb.Digest {
			return put(&repb.Directory{Files: []*repb.FileNode{{Name: "..", Digest: file}}}).ToProto()
		}, okCmd, codes.InvalidArgument},
		{"slash in name", func() *repb.Digest {
			return put(&repb.Directory{Files: []*repb.FileNode{{Name: "a/b", Digest: file}}}).ToProto()
		}, okCmd, codes.InvalidArgument},
		{"empty name", func() *repb.Digest {
			return put(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "", Digest: sub}}}).ToProto()
		}, okCmd, codes.InvalidArgument},
		{"unsorted", func() *repb.Digest {
			return put(&repb.Directory{Files: []*repb.FileNode{{Name: "b", Digest: file}, {Name: "a", Digest: file}}}).ToProto()
		}, okCmd, codes.InvalidArgument},
		{"file and directory of one name", func() *repb.Digest {
			return put(&repb.Directory{Files: []*repb.FileNode{{Name: "a", Digest: file}}, Directories: []*repb.DirectoryNode{{Name: "a", Digest: sub}}}).ToProto()
		}, okCmd, codes.InvalidArgument},
		{"absolute symlink", func() *repb.Digest {
			return put(&repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: "/etc/passwd"}}}).ToProto()
		}, okCmd, codes.InvalidArgument},
		{"escaping symlink", func() *repb.Digest {
			inner := put(&repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: "../../x"}}}).ToProto()
			return put(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "d", Digest: inner}}}).ToProto()
		}, okCmd, codes.InvalidArgument},
		{"directory digest mismatch", func() *repb.Digest {
			real := put(&repb.Directory{Files: []*repb.FileNode{{Name: "a", Digest: file}}})
			fake := digest.OfBytes([]byte("not this"))
			if err := os.Link(filepath.Join(f.dir, "cas", real.Hash), filepath.Join(f.dir, "cas", fake.Hash)); err != nil {
				t.Fatal(err)
			}
			return digest.MustNew(fake.Hash, real.Size).ToProto()
		}, okCmd, codes.InvalidArgument},
		{"missing input", func() *repb.Digest {
			return put(&repb.Directory{Files: []*repb.FileNode{{Name: "a", Digest: digest.OfBytes([]byte("never stored")).ToProto()}}}).ToProto()
		}, okCmd, codes.FailedPrecondition},
		{"absolute output", func() *repb.Digest { return sub }, &repb.Command{Arguments: []string{"/bin/true"}, OutputFiles: []string{"/etc/x"}}, codes.InvalidArgument},
		{"dot-dot output", func() *repb.Digest { return sub }, &repb.Command{Arguments: []string{"/bin/true"}, OutputPaths: []string{"a/../../x"}}, codes.InvalidArgument},
		{"no arguments", func() *repb.Digest { return sub }, &repb.Command{}, codes.InvalidArgument},
		{"output through input symlink", func() *repb.Digest {
			return put(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "d", Digest: sub}}, Symlinks: []*repb.SymlinkNode{{Name: "l", Target: "d"}}}).ToProto()
		}, &repb.Command{Arguments: []string{"/bin/true"}, OutputFiles: []string{"l/x"}}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &repb.Action{CommandDigest: workertest.PutMessage(f.store, tc.cmd).ToProto(), InputRootDigest: tc.root()}
			_, err := f.w.Execute(context.Background(), worker.Job{Action: a})
			if status.Code(err) != tc.code {
				t.Fatalf("Execute = %v, want %v", err, tc.code)
			}
			if tc.code == codes.FailedPrecondition {
				st, _ := status.FromError(err)
				var found bool
				for _, d := range st.Details() {
					if pf, ok := d.(*errdetails.PreconditionFailure); ok && len(pf.Violations) == 1 && pf.Violations[0].Type == "MISSING" &&
						pf.Violations[0].Subject == "blobs/"+digest.OfBytes([]byte("never stored")).String() {
						found = true
					}
				}
				if !found {
					t.Errorf("no PreconditionFailure naming the missing blob in %v", st.Details())
				}
			}
		})
	}
}
