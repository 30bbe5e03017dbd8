package signing_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/scheduler"
	"github.com/hallmark-build/hallmark/builder/signing"
	"github.com/hallmark-build/hallmark/signer/signerpb"
)

type fakeManifester struct {
	got *signerpb.MakeManifestRequest
	err error
}

func (f *fakeManifester) MakeManifest(_ context.Context, req *signerpb.MakeManifestRequest) (*signerpb.MakeManifestResponse, error) {
	f.got = req
	if f.err != nil {
		return nil, f.err
	}
	return &signerpb.MakeManifestResponse{Envelope: []byte("ENVELOPE")}, nil
}

func put(t *testing.T, s blobstore.Store, b []byte) digest.Digest {
	t.Helper()
	d := digest.OfBytes(b)
	if err := s.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

func putDir(t *testing.T, s blobstore.Store, dir *repb.Directory) digest.Digest {
	t.Helper()
	b, err := proto.Marshal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return put(t, s, b)
}

// task builds bazel-out/stable-status.txt and bazel-out/bin/{app,extra}.
func task(t *testing.T, s blobstore.Store, status string, extra bool, subjects string) *scheduler.Task {
	t.Helper()
	app := put(t, s, []byte("app binary"))
	bin := &repb.Directory{Files: []*repb.FileNode{{Name: "app", Digest: app.ToProto()}}}
	if extra {
		bin.Files = append(bin.Files, &repb.FileNode{Name: "extra", Digest: put(t, s, []byte("x")).ToProto()})
	}
	st := put(t, s, []byte(status))
	out := &repb.Directory{
		Files:       []*repb.FileNode{{Name: "stable-status.txt", Digest: st.ToProto()}},
		Directories: []*repb.DirectoryNode{{Name: "bin", Digest: putDir(t, s, bin).ToProto()}},
	}
	root := putDir(t, s, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "bazel-out", Digest: putDir(t, s, out).ToProto()}}})
	cmd := &repb.Command{
		Arguments:   []string{"/bin/bash", "-c", "exit 1"},
		OutputFiles: []string{"bazel-out/bin/m.intoto.jsonl"},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{
			{Name: signing.EnvStatusFile, Value: "bazel-out/stable-status.txt"},
			{Name: signing.EnvSubjects, Value: subjects},
			{Name: signing.EnvTargets, Value: "//:app"},
		},
		Platform: &repb.Platform{Properties: []*repb.Platform_Property{{Name: signing.Property, Value: "1"}}},
	}
	return &scheduler.Task{Action: &repb.Action{InputRootDigest: root.ToProto()}, Command: cmd}
}

func stderr(t *testing.T, s blobstore.Store, res *repb.ActionResult) string {
	t.Helper()
	d, err := digest.FromProto(res.GetStderrDigest())
	if err != nil {
		t.Fatalf("no stderr: %v", err)
	}
	rc, err := s.Get(context.Background(), d, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

const commit = "0123456789abcdef0123456789abcdef01234567"

func TestHandlerExecute(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     string
		extra      bool
		subjects   string
		signerErr  error
		wantStderr string // "" means success
	}{
		{name: "Signs", status: "BUILD_HOST h\nSTABLE_HALLMARK_COMMIT " + commit + "\n", subjects: "bazel-out/bin/app"},
		{name: "NoCommit", status: "BUILD_HOST h\n", subjects: "bazel-out/bin/app", wantStderr: "--workspace_status_command"},
		{name: "BadCommit", status: "STABLE_HALLMARK_COMMIT HEAD\n", subjects: "bazel-out/bin/app", wantStderr: "not a full commit id"},
		{name: "UnlistedInput", status: "STABLE_HALLMARK_COMMIT " + commit, extra: true, subjects: "bazel-out/bin/app", wantStderr: "neither subjects nor"},
		{name: "MissingSubject", status: "STABLE_HALLMARK_COMMIT " + commit, subjects: "bazel-out/bin/nope", wantStderr: "not a file among"},
		{name: "Refused", status: "STABLE_HALLMARK_COMMIT " + commit, subjects: "bazel-out/bin/app",
			signerErr: status.Error(codes.FailedPrecondition, `refused: "a.go" not in commit`), wantStderr: `"a.go" not in commit`},
		{name: "SignerDown", status: "STABLE_HALLMARK_COMMIT " + commit, subjects: "bazel-out/bin/app",
			signerErr: &signing.UnavailableError{Addr: "unix:/s", Err: errors.New("no connection")}, wantStderr: "is not reachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := blobstore.NewMemory()
			m := &fakeManifester{err: tc.signerErr}
			h, err := signing.NewHandler(m, s, "default")
			if err != nil {
				t.Fatal(err)
			}
			res, err := h.Execute(context.Background(), task(t, s, tc.status, tc.extra, tc.subjects))
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if tc.wantStderr != "" {
				if res.GetExitCode() == 0 {
					t.Fatalf("exit code 0, want a failure with %q", tc.wantStderr)
				}
				if got := stderr(t, s, res); !strings.Contains(got, tc.wantStderr) {
					t.Errorf("stderr %q lacks %q", got, tc.wantStderr)
				}
				return
			}
			if res.GetExitCode() != 0 || len(res.GetOutputFiles()) != 1 {
				t.Fatalf("result %v, want one output", res)
			}
			if of := res.GetOutputFiles()[0]; of.GetPath() != "bazel-out/bin/m.intoto.jsonl" || of.GetDigest().GetHash() != digest.OfBytes([]byte("ENVELOPE")).Hash {
				t.Errorf("output %v", of)
			}
			if m.got.GetTenant() != "default" || m.got.GetCommit() != commit || len(m.got.GetArtifacts()) != 1 ||
				m.got.GetArtifacts()[0].GetName() != "bazel-out/bin/app" || m.got.GetTargets()[0] != "//:app" {
				t.Errorf("request %v", m.got)
			}
		})
	}
}

func TestRequested(t *testing.T) {
	p := func(v string) *repb.Platform {
		return &repb.Platform{Properties: []*repb.Platform_Property{{Name: signing.Property, Value: v}}}
	}
	for _, tc := range []struct {
		name string
		a    *repb.Action
		c    *repb.Command
		want bool
	}{
		{"ActionPlatform", &repb.Action{Platform: p("1")}, &repb.Command{}, true},
		{"CommandPlatform", &repb.Action{}, &repb.Command{Platform: p("true")}, true},
		{"Zero", &repb.Action{Platform: p("0")}, &repb.Command{}, false},
		{"None", &repb.Action{}, &repb.Command{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := signing.Requested(tc.a, tc.c); got != tc.want {
				t.Errorf("Requested = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	m, err := signing.ParseStatus([]byte("A 1\nB two words\r\nEMPTY\n\n"))
	if err != nil || m["A"] != "1" || m["B"] != "two words" || m["EMPTY"] != "" {
		t.Errorf("ParseStatus = %v, %v", m, err)
	}
	if _, err := signing.ParseStatus([]byte("A 1\nA 2\n")); err == nil {
		t.Error("duplicate key accepted")
	}
	if _, err := signing.ParseStatus([]byte(" A 1\n")); err == nil {
		t.Error("leading space accepted")
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("STABLE_HALLMARK_COMMIT " + commit + "\n"))
	f.Add([]byte("A\nB c\n\n"))
	f.Add([]byte("A 1\nA 2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := signing.ParseStatus(b)
		if err != nil {
			return
		}
		if c, ok := m[signing.CommitKey]; ok {
			if got, err := signing.ParseCommit(c); err == nil && len(got) != 40 && len(got) != 64 {
				t.Errorf("ParseCommit accepted %q", got)
			}
		}
	})
}
