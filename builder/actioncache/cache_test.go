package actioncache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/actioncache"
	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

var action = digest.OfBytes([]byte("action"))

func result(code int32) *repb.ActionResult {
	return &repb.ActionResult{ExitCode: code, OutputFiles: []*repb.OutputFile{{Path: "out", Digest: digest.OfBytes([]byte("o")).ToProto()}}}
}

func TestCaches(t *testing.T) {
	disk, err := actioncache.NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]actioncache.Cache{"Disk": disk, "Memory": actioncache.NewMemory()} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if _, err := c.Get(ctx, "", action); !errors.Is(err, actioncache.ErrNotFound) {
				t.Fatalf("Get before Put = %v, want ErrNotFound", err)
			}
			if err := c.Put(ctx, "", action, result(1)); err != nil {
				t.Fatal(err)
			}
			if err := c.Put(ctx, "", action, result(2)); err != nil {
				t.Fatal(err)
			}
			got, err := c.Get(ctx, "", action)
			if err != nil || !proto.Equal(got, result(2)) {
				t.Fatalf("Get = %v, %v; want the last Put", got, err)
			}
			if _, err := c.Get(ctx, "tenant-a", action); !errors.Is(err, actioncache.ErrNotFound) {
				t.Fatalf("other instance sees the result: %v", err)
			}
		})
	}
}

func TestDiskLayout(t *testing.T) {
	dir := t.TempDir()
	c, err := actioncache.NewDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Put(ctx, "", action, result(0)); err != nil {
		t.Fatal(err)
	}
	// sha256("") starts with e3b0c44298fc1c14.
	p := filepath.Join(dir, "e3b0c44298fc1c14", action.Hash[:2], action.Hash)
	if actioncache.EntryPath(dir, "", action) != p {
		t.Fatalf("EntryPath = %s, want %s", actioncache.EntryPath(dir, "", action), p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	ar := &repb.ActionResult{}
	if err := proto.Unmarshal(b, ar); err != nil || !proto.Equal(ar, result(0)) {
		t.Fatalf("entry file holds %v, %v", ar, err)
	}
	t.Run("CorruptEntryIsAbsent", func(t *testing.T) {
		if err := os.WriteFile(p, []byte{0xff, 0xff, 0xff}, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, "", action); !errors.Is(err, actioncache.ErrNotFound) {
			t.Fatalf("Get(corrupt) = %v, want ErrNotFound", err)
		}
	})
	t.Run("TmpCleanedOnOpen", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "tmp", "ac-1"), []byte("torn"), 0o600)
		if _, err := actioncache.NewDisk(dir); err != nil {
			t.Fatal(err)
		}
		if es, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(es) != 0 {
			t.Fatalf("tmp/ holds %d files after open", len(es))
		}
	})
}

func TestCompleteOnly(t *testing.T) {
	ctx := context.Background()
	cas := blobstore.NewMemory()
	store := func(s string) digest.Digest {
		d := digest.OfBytes([]byte(s))
		if err := cas.Put(ctx, d, strings.NewReader(s)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	file, inner, stdout := store("file"), store("inner file"), store("stdout")
	tree := &repb.Tree{
		Root:     &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "sub"}}},
		Children: []*repb.Directory{{Files: []*repb.FileNode{{Name: "f", Digest: inner.ToProto()}}}},
	}
	tb, _ := proto.Marshal(tree)
	treeD := store(string(tb))
	ar := &repb.ActionResult{
		OutputFiles:       []*repb.OutputFile{{Path: "a", Digest: file.ToProto()}},
		OutputDirectories: []*repb.OutputDirectory{{Path: "d", TreeDigest: treeD.ToProto()}},
		StdoutDigest:      stdout.ToProto(),
	}
	base := actioncache.NewMemory()
	if err := base.Put(ctx, "", action, ar); err != nil {
		t.Fatal(err)
	}
	c := actioncache.NewCompleteOnly(base, cas)

	refs, err := actioncache.Referenced(ctx, cas, ar)
	if err != nil || len(refs) != 4 {
		t.Fatalf("Referenced = %v, %v; want 4 blobs", refs, err)
	}
	for _, tc := range []struct {
		name    string
		evict   digest.Digest
		missing []digest.Digest
	}{
		{"Complete", digest.Digest{}, nil},
		{"FileInsideTree", inner, []digest.Digest{inner}},
		{"OutputFile", file, []digest.Digest{file}},
		{"Stdout", stdout, []digest.Digest{stdout}},
		{"Tree", treeD, []digest.Digest{treeD}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.evict != (digest.Digest{}) {
				cas.Delete(tc.evict)
				defer func() {
					content := map[digest.Digest]string{inner: "inner file", file: "file", stdout: "stdout", treeD: string(tb)}[tc.evict]
					store(content)
				}()
			}
			got, err := c.Get(ctx, "", action)
			if tc.missing == nil {
				if err != nil || !proto.Equal(got, ar) {
					t.Fatalf("Get = %v, %v; want the result", got, err)
				}
				return
			}
			var nf *actioncache.NotFoundError
			if !errors.As(err, &nf) || len(nf.Missing) != 1 || nf.Missing[0] != tc.missing[0] {
				t.Fatalf("Get = %v, want NotFoundError missing %v", err, tc.missing)
			}
		})
	}
	t.Run("MalformedTree", func(t *testing.T) {
		bad := store("\xff\xff not a tree")
		ar2 := &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "d", TreeDigest: bad.ToProto()}}}
		if _, err := actioncache.Missing(ctx, cas, ar2); !errors.Is(err, actioncache.ErrInvalid) {
			t.Fatalf("Missing(malformed tree) = %v, want ErrInvalid", err)
		}
		base.Put(ctx, "x", action, ar2)
		if _, err := c.Get(ctx, "x", action); !errors.Is(err, actioncache.ErrNotFound) {
			t.Fatalf("Get(result with malformed tree) = %v, want ErrNotFound", err)
		}
	})
	t.Run("BadDigest", func(t *testing.T) {
		ar3 := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "a", Digest: &repb.Digest{Hash: "xyz"}}}}
		if _, err := actioncache.Missing(ctx, cas, ar3); !errors.Is(err, actioncache.ErrInvalid) || !strings.Contains(err.Error(), `"a"`) {
			t.Fatalf("Missing(bad digest) = %v, want ErrInvalid naming the output", err)
		}
	})
}
