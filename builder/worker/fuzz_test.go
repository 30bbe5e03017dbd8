package worker_test

import (
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/merkle"
	"github.com/hallmark-build/hallmark/builder/worker"
)

func FuzzParseDirectory(f *testing.F) {
	seed := func(d *repb.Directory) {
		b, _ := proto.Marshal(d)
		f.Add(b)
	}
	x := digest.OfBytes([]byte("x")).ToProto()
	seed(&repb.Directory{})
	seed(&repb.Directory{Files: []*repb.FileNode{{Name: "a", Digest: x}, {Name: "b", Digest: x, IsExecutable: true}}})
	seed(&repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: "../x"}}})
	seed(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "..", Digest: x}}})
	f.Add([]byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := worker.ParseDirectory(digest.OfBytes(b), b)
		if err != nil {
			return
		}
		// What parses is valid: names are single components, lists sorted.
		for _, fn := range d.Files {
			if merkle.CheckName(fn.Name) != nil {
				t.Fatalf("accepted bad name %q", fn.Name)
			}
		}
		for _, s := range d.Symlinks {
			if s.Target == "" || s.Target[0] == '/' {
				t.Fatalf("accepted symlink target %q", s.Target)
			}
		}
	})
}

func FuzzCheckSymlinkTarget(f *testing.F) {
	f.Add("", "a")
	f.Add("a/b", "../../c")
	f.Add("a", "../../c")
	f.Add("", "/etc/passwd")
	f.Add("a", "./../b/./..")
	f.Fuzz(func(t *testing.T, dir, target string) {
		if worker.CheckSymlinkTarget(dir, target) != nil {
			return
		}
		if target == "" || target[0] == '/' {
			t.Fatalf("accepted target %q", target)
		}
	})
}

func TestCheckSymlinkTarget(t *testing.T) {
	for _, tc := range []struct {
		dir, target string
		ok          bool
	}{
		{"", "a", true},
		{"a", "../b", true},
		{"a/b", "../../c", true},
		{"", "../x", false},
		{"a", "../../x", false},
		{"a", "b/../../../x", false},
		{"a", "/abs", false},
		{"a", "", false},
	} {
		err := worker.CheckSymlinkTarget(tc.dir, tc.target)
		if (err == nil) != tc.ok {
			t.Errorf("CheckSymlinkTarget(%q, %q) = %v, want ok=%v", tc.dir, tc.target, err, tc.ok)
		}
	}
}
