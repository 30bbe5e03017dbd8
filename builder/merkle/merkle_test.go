package merkle_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/merkle"
)

func put(t testing.TB, s blobstore.Store, b []byte) digest.Digest {
	d := digest.OfBytes(b)
	if err := s.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

func putDir(t testing.TB, s blobstore.Store, dir *repb.Directory) digest.Digest {
	b, err := proto.Marshal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return put(t, s, b)
}

func TestCollect(t *testing.T) {
	ctx := context.Background()
	s := blobstore.NewMemory()
	a := put(t, s, []byte("a"))
	b := digest.OfBytes([]byte("b")) // never stored: Collect lists files, it does not check them
	leaf := putDir(t, s, &repb.Directory{Files: []*repb.FileNode{{Name: "a", Digest: a.ToProto()}, {Name: "b", Digest: b.ToProto()}}})
	absent := digest.OfBytes([]byte("not a stored directory"))
	root := putDir(t, s, &repb.Directory{
		Files:       []*repb.FileNode{{Name: "top", Digest: a.ToProto()}},
		Directories: []*repb.DirectoryNode{{Name: "x", Digest: leaf.ToProto()}, {Name: "y", Digest: leaf.ToProto()}, {Name: "z", Digest: absent.ToProto()}},
	})
	in, err := merkle.NewReader(s, 0).Collect(ctx, root, merkle.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Directories) != 3 {
		t.Errorf("directories %v, want root, leaf (once) and the absent one", in.Directories)
	}
	if len(in.Files) != 2 {
		t.Errorf("files %v, want a and b once each", in.Files)
	}
	if len(in.Missing) != 1 || in.Missing[0] != absent {
		t.Errorf("missing %v, want [%v]", in.Missing, absent)
	}
}

func TestParseRejects(t *testing.T) {
	d := digest.OfBytes([]byte("x")).ToProto()
	for name, dir := range map[string]*repb.Directory{
		"DotDot":         {Files: []*repb.FileNode{{Name: "..", Digest: d}}},
		"Slash":          {Directories: []*repb.DirectoryNode{{Name: "a/b", Digest: d}}},
		"Empty":          {Files: []*repb.FileNode{{Name: "", Digest: d}}},
		"Unsorted":       {Files: []*repb.FileNode{{Name: "b", Digest: d}, {Name: "a", Digest: d}}},
		"Duplicate":      {Files: []*repb.FileNode{{Name: "a", Digest: d}}, Directories: []*repb.DirectoryNode{{Name: "a", Digest: d}}},
		"BadDigest":      {Files: []*repb.FileNode{{Name: "a", Digest: &repb.Digest{Hash: "zz", SizeBytes: 1}}}},
		"AbsoluteTarget": {Symlinks: []*repb.SymlinkNode{{Name: "l", Target: "/etc/passwd"}}},
	} {
		t.Run(name, func(t *testing.T) {
			b, _ := proto.Marshal(dir)
			if _, err := merkle.Parse(b); !errors.Is(err, merkle.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestDirectoryChecksContent(t *testing.T) {
	s := blobstore.NewMemory()
	r := merkle.NewReader(s, 0)
	if _, err := r.Directory(context.Background(), digest.OfBytes([]byte("nothing"))); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func FuzzParse(f *testing.F) {
	b, _ := proto.Marshal(&repb.Directory{Files: []*repb.FileNode{{Name: "a", Digest: digest.Empty.ToProto()}}})
	f.Add(b)
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 0x2e})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir, err := merkle.Parse(b)
		if err == nil {
			for _, n := range dir.GetFiles() {
				if merkle.CheckName(n.GetName()) != nil {
					t.Fatalf("accepted bad name %q", n.GetName())
				}
			}
		}
	})
}

func FuzzCollect(f *testing.F) {
	f.Add([]byte("x"), []byte{0x12, 0x03, 0x0a, 0x01, 0x61})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		s := blobstore.NewMemory()
		put(t, s, a)
		root := put(t, s, b)
		merkle.NewReader(s, 0).Collect(context.Background(), root, merkle.Limits{MaxDirectories: 100})
	})
}
