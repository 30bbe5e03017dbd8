package sandbox_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/hallmark-build/hallmark/builder/sandbox"
	"github.com/hallmark-build/hallmark/builder/worker"
	"github.com/hallmark-build/hallmark/builder/worker/workertest"
)

const benchUID = 63000

func needBwrap(b *testing.B) string {
	b.Helper()
	p, err := exec.LookPath("bwrap")
	if err != nil {
		b.Skip("bwrap not installed")
	}
	if os.Geteuid() != 0 {
		b.Skip("needs root to run sandboxes as another uid")
	}
	return p
}

func BenchmarkBareBwrap(b *testing.B) {
	bwrap := needBwrap(b)
	args := []string{"--unshare-all", "--unshare-user", "--die-with-parent",
		"--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
		"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/bin/true"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(bwrap, args...)
		cmd.Env = []string{}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: benchUID, Gid: benchUID, Groups: []uint32{}}}
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRunner(b *testing.B) {
	needBwrap(b)
	r, err := sandbox.NewBwrap(sandbox.WithCgroupName("hallmark-bench"))
	if err != nil {
		b.Fatal(err)
	}
	dir := benchDir(b)
	spec := sandbox.Spec{Args: []string{"/bin/true"}, InputRoot: dir, UID: benchUID, GID: benchUID,
		Limits: sandbox.Limits{Processes: 1024, FileSizeBytes: 1 << 30, MemoryBytes: 1 << 30}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := r.Run(context.Background(), spec)
		if err != nil || res.ExitCode != 0 {
			b.Fatal(res, err)
		}
	}
}

func BenchmarkExecute(b *testing.B) {
	needBwrap(b)
	dir := benchDir(b)
	cas := filepath.Join(dir, "cas")
	if err := os.Mkdir(cas, 0o700); err != nil {
		b.Fatal(err)
	}
	store := &workertest.DirStore{Dir: cas}
	r, err := sandbox.NewBwrap(sandbox.WithCgroupName("hallmark-bench"))
	if err != nil {
		b.Fatal(err)
	}
	w, err := worker.New(filepath.Join(dir, "worker"), store, r, worker.WithSlots(1), worker.WithUIDBase(benchUID))
	if err != nil {
		b.Fatal(err)
	}
	root := workertest.PutTree(store, map[string]workertest.File{
		"pkg/a.txt":    {Content: "a\n"},
		"pkg/b.txt":    {Content: "b\n"},
		"tools/cat.sh": {Content: "#!/bin/sh\nexec /bin/cat \"$@\"\n", Executable: true},
	})
	cmd := &repb.Command{
		Arguments:   []string{"/bin/sh", "-c", "cat pkg/a.txt pkg/b.txt > bazel-out/bin/pkg/out.txt"},
		OutputFiles: []string{"bazel-out/bin/pkg/out.txt"},
	}
	action := &repb.Action{CommandDigest: workertest.PutMessage(store, cmd).ToProto(), InputRootDigest: root.ToProto()}
	var input, run, upload time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := w.Execute(context.Background(), worker.Job{Action: action, Command: cmd})
		if err != nil || out.Result.ExitCode != 0 || len(out.Result.OutputFiles) != 1 {
			b.Fatal(out, err)
		}
		md := out.Result.ExecutionMetadata
		input += md.InputFetchCompletedTimestamp.AsTime().Sub(md.InputFetchStartTimestamp.AsTime())
		run += md.ExecutionCompletedTimestamp.AsTime().Sub(md.ExecutionStartTimestamp.AsTime())
		upload += md.OutputUploadCompletedTimestamp.AsTime().Sub(md.OutputUploadStartTimestamp.AsTime())
	}
	n := float64(b.N)
	b.ReportMetric(float64(input.Microseconds())/n, "input-us/op")
	b.ReportMetric(float64(run.Microseconds())/n, "sandbox-us/op")
	b.ReportMetric(float64(upload.Microseconds())/n, "upload-us/op")
}

func benchDir(b *testing.B) string {
	dir := b.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}
