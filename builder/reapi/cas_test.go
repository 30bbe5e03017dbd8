package reapi_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/actioncache"
	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/reapi"
)

// farm is a real gRPC server on 127.0.0.1:0 serving two instances over one
// disk CAS: "" (clients may write the ActionCache) and "ro" (they may not).
type farm struct {
	dir  string
	cas  *blobstore.Disk
	conn *grpc.ClientConn
	caps repb.CapabilitiesClient
	cs   repb.ContentAddressableStorageClient
	ac   repb.ActionCacheClient
	bs   bytestream.ByteStreamClient
}

func start(t testing.TB, bsOpts ...reapi.ByteStreamOption) *farm {
	t.Helper()
	dir := t.TempDir()
	cas, err := blobstore.NewDisk(filepath.Join(dir, "cas"), blobstore.WithMaxBlobBytes(10<<20))
	if err != nil {
		t.Fatal(err)
	}
	disk, err := actioncache.NewDisk(filepath.Join(dir, "ac"))
	if err != nil {
		t.Fatal(err)
	}
	ac := actioncache.NewCompleteOnly(disk, cas)
	r, err := reapi.NewStaticResolver(
		&reapi.Instance{Name: "", CAS: cas, ActionCache: ac, ClientActionCacheWrites: true},
		&reapi.Instance{Name: "ro", CAS: cas, ActionCache: ac},
	)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := reapi.NewByteStreamServer(r, append([]reapi.ByteStreamOption{reapi.WithUploadDir(filepath.Join(dir, "uploads"))}, bsOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	repb.RegisterCapabilitiesServer(srv, reapi.NewCapabilitiesServer(r, reapi.WithExecution(true)))
	repb.RegisterContentAddressableStorageServer(srv, reapi.NewCASServer(r, reapi.WithMaxTreeDirectories(50)))
	repb.RegisterActionCacheServer(srv, reapi.NewActionCacheServer(r, reapi.WithMaxInlineBytes(100)))
	bytestream.RegisterByteStreamServer(srv, bs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &farm{
		dir: dir, cas: cas, conn: conn,
		caps: repb.NewCapabilitiesClient(conn),
		cs:   repb.NewContentAddressableStorageClient(conn),
		ac:   repb.NewActionCacheClient(conn),
		bs:   bytestream.NewByteStreamClient(conn),
	}
}

func (f *farm) put(t *testing.T, content []byte) digest.Digest {
	t.Helper()
	d := digest.OfBytes(content)
	if err := f.cas.Put(context.Background(), d, strings.NewReader(string(content))); err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *farm) putProto(t *testing.T, m proto.Message) digest.Digest {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return f.put(t, b)
}

func wantCode(t *testing.T, err error, want codes.Code, msgPart string) {
	t.Helper()
	if status.Code(err) != want {
		t.Fatalf("got %v, want code %v", err, want)
	}
	if msgPart != "" && !strings.Contains(status.Convert(err).Message(), msgPart) {
		t.Fatalf("message %q does not mention %q", status.Convert(err).Message(), msgPart)
	}
}

var bad = &repb.Digest{Hash: "not-a-hash", SizeBytes: 3}

func TestFindMissingBlobs(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	present := f.put(t, []byte("present"))
	absent := digest.OfBytes([]byte("absent"))
	for _, tc := range []struct {
		name     string
		req      *repb.FindMissingBlobsRequest
		want     []digest.Digest
		wantCode codes.Code
		msg      string
	}{
		{"Mixed", &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{present.ToProto(), absent.ToProto(), digest.Empty.ToProto()}}, []digest.Digest{absent}, codes.OK, ""},
		{"SHA256Explicit", &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{absent.ToProto()}, DigestFunction: repb.DigestFunction_SHA256}, []digest.Digest{absent}, codes.OK, ""},
		{"OtherInstance", &repb.FindMissingBlobsRequest{InstanceName: "ro", BlobDigests: []*repb.Digest{present.ToProto()}}, nil, codes.OK, ""},
		{"BadDigest", &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{present.ToProto(), bad}}, nil, codes.InvalidArgument, "blob_digests[1]"},
		{"MD5", &repb.FindMissingBlobsRequest{DigestFunction: repb.DigestFunction_MD5}, nil, codes.InvalidArgument, "MD5"},
		{"UnknownInstance", &repb.FindMissingBlobsRequest{InstanceName: "nope"}, nil, codes.InvalidArgument, `"nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := f.cs.FindMissingBlobs(ctx, tc.req)
			wantCode(t, err, tc.wantCode, tc.msg)
			if err != nil {
				return
			}
			var got []digest.Digest
			for _, p := range resp.GetMissingBlobDigests() {
				got = append(got, digest.MustNew(p.Hash, p.SizeBytes))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("missing = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBatchUpdateBlobs(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	good := []byte("good blob")
	gd := digest.OfBytes(good)
	resp, err := f.cs.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: gd.ToProto(), Data: good},
		{Digest: digest.OfBytes([]byte("other")).ToProto(), Data: []byte("wrong")},
		{Digest: bad, Data: []byte("abc")},
		{Digest: digest.MustNew(gd.Hash, 3).ToProto(), Data: good},
		{Digest: gd.ToProto(), Data: good, Compressor: repb.Compressor_ZSTD},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.OK, codes.InvalidArgument, codes.InvalidArgument, codes.InvalidArgument, codes.InvalidArgument}
	if len(resp.Responses) != len(want) {
		t.Fatalf("%d responses, want %d", len(resp.Responses), len(want))
	}
	for i, r := range resp.Responses {
		if codes.Code(r.Status.Code) != want[i] {
			t.Errorf("response %d: %v, want %v", i, r.Status, want[i])
		}
	}
	if m, _ := f.cas.FindMissing(ctx, []digest.Digest{gd, digest.OfBytes([]byte("wrong"))}); len(m) != 1 || m[0] == gd {
		t.Fatalf("after batch, missing = %v; want only the mismatching one", m)
	}
	t.Run("TooLarge", func(t *testing.T) {
		big := make([]byte, 3<<20)
		_, err := f.cs.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
			{Digest: digest.OfBytes(big).ToProto(), Data: big}, {Digest: digest.OfBytes(big[1:]).ToProto(), Data: big[1:]},
		}}, grpc.MaxCallSendMsgSize(16<<20))
		if status.Code(err) != codes.InvalidArgument && status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("oversized batch = %v", err)
		}
	})
}

func TestBatchReadBlobs(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	a := f.put(t, []byte("blob a"))
	absent := digest.OfBytes([]byte("absent"))
	resp, err := f.cs.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{a.ToProto(), absent.ToProto(), digest.Empty.ToProto()}})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Responses
	if len(r) != 3 || string(r[0].Data) != "blob a" || r[0].Status.Code != 0 ||
		codes.Code(r[1].Status.Code) != codes.NotFound || r[2].Status.Code != 0 || len(r[2].Data) != 0 {
		t.Fatalf("responses = %v", r)
	}
	_, err = f.cs.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{{Hash: a.Hash, SizeBytes: 5 << 20}}})
	wantCode(t, err, codes.InvalidArgument, "max_batch_total_size_bytes")
	_, err = f.cs.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{bad}})
	wantCode(t, err, codes.InvalidArgument, "digests[0]")
}

func dirNode(name string, d digest.Digest) *repb.DirectoryNode {
	return &repb.DirectoryNode{Name: name, Digest: d.ToProto()}
}

func getTree(t *testing.T, f *farm, req *repb.GetTreeRequest) ([]*repb.GetTreeResponse, error) {
	t.Helper()
	stream, err := f.cs.GetTree(context.Background(), req)
	if err != nil {
		return nil, err
	}
	var out []*repb.GetTreeResponse
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
}

func TestGetTree(t *testing.T) {
	f := start(t)
	file := f.put(t, []byte("file"))
	leaf := &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: file.ToProto()}}}
	leafD := f.putProto(t, leaf)
	mid := &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("x", leafD), dirNode("y", leafD)}}
	midD := f.putProto(t, mid)
	absentDir := digest.OfBytes([]byte("no such directory"))
	root := &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("a", midD), dirNode("b", leafD), dirNode("gone", absentDir)}}
	rootD := f.putProto(t, root)

	t.Run("BreadthFirstDeduplicated", func(t *testing.T) {
		resps, err := getTree(t, f, &repb.GetTreeRequest{RootDigest: rootD.ToProto()})
		if err != nil {
			t.Fatal(err)
		}
		var got []*repb.Directory
		for _, r := range resps {
			got = append(got, r.Directories...)
		}
		want := []*repb.Directory{root, mid, leaf}
		if len(got) != len(want) {
			t.Fatalf("got %d directories, want %d (missing ones omitted, repeats once)", len(got), len(want))
		}
		for i := range want {
			if !proto.Equal(got[i], want[i]) {
				t.Fatalf("directory %d = %v, want %v", i, got[i], want[i])
			}
		}
		if resps[len(resps)-1].NextPageToken != "" {
			t.Fatal("last page has a next_page_token")
		}
	})
	t.Run("Paged", func(t *testing.T) {
		resps, err := getTree(t, f, &repb.GetTreeRequest{RootDigest: rootD.ToProto(), PageSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(resps) != 3 || resps[0].NextPageToken == "" {
			t.Fatalf("got %d pages, want 3 with tokens", len(resps))
		}
		rest, err := getTree(t, f, &repb.GetTreeRequest{RootDigest: rootD.ToProto(), PageSize: 1, PageToken: resps[1].NextPageToken})
		if err != nil {
			t.Fatal(err)
		}
		if len(rest) != 1 || !proto.Equal(rest[0].Directories[0], leaf) {
			t.Fatalf("resuming at the second token gave %v, want the leaf", rest)
		}
	})
	for _, tc := range []struct {
		name string
		req  *repb.GetTreeRequest
		code codes.Code
		msg  string
	}{
		{"MissingRoot", &repb.GetTreeRequest{RootDigest: absentDir.ToProto()}, codes.NotFound, absentDir.Hash},
		{"BadRoot", &repb.GetTreeRequest{RootDigest: bad}, codes.InvalidArgument, "root_digest"},
		{"BadToken", &repb.GetTreeRequest{RootDigest: rootD.ToProto(), PageToken: "xyz"}, codes.InvalidArgument, "page_token"},
		{"NegativePageSize", &repb.GetTreeRequest{RootDigest: rootD.ToProto(), PageSize: -1}, codes.InvalidArgument, "page_size"},
		{"Malformed", &repb.GetTreeRequest{RootDigest: f.put(t, []byte("\xff\xffjunk")).ToProto()}, codes.InvalidArgument, "Directory"},
		{"BadChildName", &repb.GetTreeRequest{RootDigest: f.putProto(t, &repb.Directory{Directories: []*repb.DirectoryNode{dirNode("..", leafD)}}).ToProto()}, codes.InvalidArgument, `".."`},
		{"BadChildDigest", &repb.GetTreeRequest{RootDigest: f.putProto(t, &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: bad}}}).ToProto()}, codes.InvalidArgument, `"f"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := getTree(t, f, tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	t.Run("Huge", func(t *testing.T) {
		// A chain of 60 distinct directories exceeds the server's bound of 50.
		d := leafD
		for i := 0; i < 60; i++ {
			d = f.putProto(t, &repb.Directory{Directories: []*repb.DirectoryNode{dirNode(fmt.Sprint("d", i), d)}})
		}
		_, err := getTree(t, f, &repb.GetTreeRequest{RootDigest: d.ToProto()})
		wantCode(t, err, codes.ResourceExhausted, "50")
	})
}

// FuzzParseDirectory feeds random bytes to the Directory decoder the tree
// walk uses; it must never panic, and what it accepts must re-validate.
func FuzzParseDirectory(f *testing.F) {
	good, _ := proto.Marshal(&repb.Directory{
		Files:       []*repb.FileNode{{Name: "a", Digest: digest.OfBytes([]byte("a")).ToProto()}},
		Directories: []*repb.DirectoryNode{{Name: "d", Digest: digest.Empty.ToProto()}},
		Symlinks:    []*repb.SymlinkNode{{Name: "l", Target: "a"}},
	})
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte("\x0a\x03\x0a\x01/"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir, err := reapi.ParseDirectory(b)
		if err != nil {
			return
		}
		if err := reapi.ValidateDirectory(dir); err != nil {
			t.Fatalf("accepted directory fails validation: %v", err)
		}
		for _, n := range dir.GetDirectories() {
			if n.Name == "" || n.Name == ".." || strings.Contains(n.Name, "/") {
				t.Fatalf("accepted bad name %q", n.Name)
			}
		}
	})
}

// FuzzGetTree walks trees whose root Directory is random bytes (with a real
// child) through a real server; the server must answer with a status, never
// crash.
func FuzzGetTree(f *testing.F) {
	f.Add([]byte{}, int32(0), "")
	f.Add([]byte("\x12\x05\x0a\x01x\x12\x00"), int32(1), "1")
	f.Add([]byte("\xff"), int32(-1), "-3")
	fm := start(f)
	f.Fuzz(func(t *testing.T, b []byte, pageSize int32, token string) {
		d := digest.OfBytes(b)
		fm.cas.Put(context.Background(), d, strings.NewReader(string(b)))
		_, err := getTree(t, fm, &repb.GetTreeRequest{RootDigest: d.ToProto(), PageSize: pageSize, PageToken: token})
		if err != nil && status.Code(err) == codes.Unknown {
			t.Fatalf("status without a code: %v", err)
		}
	})
}
