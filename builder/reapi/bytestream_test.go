package reapi_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/reapi"
)

func read(t *testing.T, f *farm, req *bytestream.ReadRequest) ([]byte, int, error) {
	t.Helper()
	stream, err := f.bs.Read(context.Background(), req)
	if err != nil {
		return nil, 0, err
	}
	var buf bytes.Buffer
	n := 0
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			return buf.Bytes(), n, nil
		}
		if err != nil {
			return nil, n, err
		}
		if len(r.Data) > reapi.ReadChunkBytes {
			t.Fatalf("chunk of %d bytes", len(r.Data))
		}
		n++
		buf.Write(r.Data)
	}
}

func TestByteStreamRead(t *testing.T) {
	f := start(t)
	big := bytes.Repeat([]byte("0123456789"), 250000) // 2.5 MB: three chunks
	bd := f.put(t, big)
	small := f.put(t, []byte("hello world"))
	name := func(d digest.Digest) string { return "blobs/" + d.String() }
	for _, tc := range []struct {
		name       string
		req        *bytestream.ReadRequest
		want       []byte
		wantChunks int
		code       codes.Code
	}{
		{"Whole", &bytestream.ReadRequest{ResourceName: name(small)}, []byte("hello world"), 1, codes.OK},
		{"Offset", &bytestream.ReadRequest{ResourceName: name(small), ReadOffset: 6}, []byte("world"), 1, codes.OK},
		{"Limit", &bytestream.ReadRequest{ResourceName: name(small), ReadOffset: 2, ReadLimit: 3}, []byte("llo"), 1, codes.OK},
		{"LimitPastEnd", &bytestream.ReadRequest{ResourceName: name(small), ReadOffset: 9, ReadLimit: 30}, []byte("ld"), 1, codes.OK},
		{"FunctionAsInstance", &bytestream.ReadRequest{ResourceName: "sha256/blobs/" + bd.String()}, nil, 0, codes.InvalidArgument},
		{"Big", &bytestream.ReadRequest{ResourceName: name(bd)}, big, 3, codes.OK},
		{"Empty", &bytestream.ReadRequest{ResourceName: name(digest.Empty)}, nil, 0, codes.OK},
		{"OffsetPastEnd", &bytestream.ReadRequest{ResourceName: name(small), ReadOffset: 12}, nil, 0, codes.OutOfRange},
		{"NegativeLimit", &bytestream.ReadRequest{ResourceName: name(small), ReadLimit: -1}, nil, 0, codes.InvalidArgument},
		{"Missing", &bytestream.ReadRequest{ResourceName: name(digest.OfBytes([]byte("x")))}, nil, 0, codes.NotFound},
		{"Compressed", &bytestream.ReadRequest{ResourceName: "compressed-blobs/zstd/" + small.String()}, nil, 0, codes.Unimplemented},
		{"UnknownInstance", &bytestream.ReadRequest{ResourceName: "other/" + name(small)}, nil, 0, codes.InvalidArgument},
		{"Garbage", &bytestream.ReadRequest{ResourceName: "blobs/zz/1"}, nil, 0, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, chunks, err := read(t, f, tc.req)
			wantCode(t, err, tc.code, "")
			if err == nil && (!bytes.Equal(got, tc.want) || chunks != tc.wantChunks) {
				t.Fatalf("read %d bytes in %d chunks, want %d bytes in %d chunks", len(got), chunks, len(tc.want), tc.wantChunks)
			}
		})
	}
}

// write sends chunks as one Write stream and returns the response.
func write(t *testing.T, f *farm, name string, chunks []*bytestream.WriteRequest) (*bytestream.WriteResponse, error) {
	t.Helper()
	stream, err := f.bs.Write(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if c.ResourceName == "" {
			c.ResourceName = name
		}
		if err := stream.Send(c); err != nil {
			break // the server answered early; CloseAndRecv reports it
		}
	}
	return stream.CloseAndRecv()
}

func uploads(t *testing.T, f *farm) int {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(f.dir, "uploads"))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func TestByteStreamWrite(t *testing.T) {
	ctx := context.Background()
	content := bytes.Repeat([]byte("abcdefgh"), 1000)
	d := digest.OfBytes(content)
	name := "uploads/3f2a/blobs/" + d.String()

	t.Run("Chunked", func(t *testing.T) {
		f := start(t)
		resp, err := write(t, f, name, []*bytestream.WriteRequest{
			{WriteOffset: 0, Data: content[:3000]},
			{WriteOffset: 3000, Data: content[3000:7000]},
			{WriteOffset: 7000, Data: content[7000:], FinishWrite: true},
		})
		if err != nil || resp.CommittedSize != d.Size {
			t.Fatalf("Write = %v, %v", resp, err)
		}
		if m, _ := f.cas.FindMissing(ctx, []digest.Digest{d}); len(m) != 0 {
			t.Fatal("blob not stored")
		}
		if uploads(t, f) != 0 {
			t.Fatal("partial upload left behind")
		}
	})
	t.Run("SingleMessage", func(t *testing.T) {
		f := start(t)
		resp, err := write(t, f, "uploads/x/blobs/sha256/"+d.String()+"/meta", []*bytestream.WriteRequest{{Data: content, FinishWrite: true}})
		if err != nil || resp.CommittedSize != d.Size {
			t.Fatalf("Write = %v, %v", resp, err)
		}
	})
	t.Run("Resume", func(t *testing.T) {
		f := start(t)
		// The first stream breaks off after 3000 bytes.
		_, err := write(t, f, name, []*bytestream.WriteRequest{{Data: content[:3000]}})
		wantCode(t, err, codes.InvalidArgument, "without finish_write")
		qs, err := f.bs.QueryWriteStatus(ctx, &bytestream.QueryWriteStatusRequest{ResourceName: name})
		if err != nil || qs.CommittedSize != 3000 || qs.Complete {
			t.Fatalf("QueryWriteStatus = %v, %v; want 3000 committed", qs, err)
		}
		if m, _ := f.cas.FindMissing(ctx, []digest.Digest{d}); len(m) != 1 {
			t.Fatal("partial upload is visible in the CAS")
		}
		_, err = write(t, f, name, []*bytestream.WriteRequest{{WriteOffset: 5, Data: content[5:]}})
		wantCode(t, err, codes.InvalidArgument, "3000 bytes")
		resp, err := write(t, f, name, []*bytestream.WriteRequest{{WriteOffset: 3000, Data: content[3000:], FinishWrite: true}})
		if err != nil || resp.CommittedSize != d.Size {
			t.Fatalf("resumed Write = %v, %v", resp, err)
		}
		qs, err = f.bs.QueryWriteStatus(ctx, &bytestream.QueryWriteStatusRequest{ResourceName: name})
		if err != nil || qs.CommittedSize != d.Size || !qs.Complete {
			t.Fatalf("QueryWriteStatus after finish = %v, %v", qs, err)
		}
		if uploads(t, f) != 0 {
			t.Fatal("partial upload left behind")
		}
	})
	t.Run("RestartAtZero", func(t *testing.T) {
		f := start(t)
		write(t, f, name, []*bytestream.WriteRequest{{Data: []byte("garbage!")}})
		resp, err := write(t, f, name, []*bytestream.WriteRequest{{Data: content, FinishWrite: true}})
		if err != nil || resp.CommittedSize != d.Size {
			t.Fatalf("Write from 0 after a partial one = %v, %v", resp, err)
		}
	})
	t.Run("ExistingBlob", func(t *testing.T) {
		f := start(t)
		f.put(t, content)
		resp, err := write(t, f, name, []*bytestream.WriteRequest{{Data: content[:10]}})
		if err != nil || resp.CommittedSize != d.Size {
			t.Fatalf("Write of a stored blob = %v, %v; want committed_size %d at once", resp, err, d.Size)
		}
	})
	for _, tc := range []struct {
		name   string
		res    string
		chunks []*bytestream.WriteRequest
		code   codes.Code
		msg    string
	}{
		{"Mismatch", name, []*bytestream.WriteRequest{{Data: bytes.ToUpper(content[:4000])}, {WriteOffset: 4000, Data: content[4000:], FinishWrite: true}}, codes.InvalidArgument, "hashes to"},
		{"TooMuchData", name, []*bytestream.WriteRequest{{Data: content}, {WriteOffset: d.Size, Data: []byte("x")}}, codes.InvalidArgument, "more than"},
		{"EarlyFinish", name, []*bytestream.WriteRequest{{Data: content[:10]}, {WriteOffset: 10, FinishWrite: true}}, codes.InvalidArgument, "finish_write after 10"},
		{"TooLarge", "uploads/u/blobs/" + digest.MustNew(d.Hash, 11<<20).String(), []*bytestream.WriteRequest{{Data: content}}, codes.InvalidArgument, "limit"},
		{"BadName", "uploads/u/blobs/xyz/3", []*bytestream.WriteRequest{{Data: content}}, codes.InvalidArgument, "xyz"},
		{"Compressed", "uploads/u/compressed-blobs/zstd/" + d.String(), []*bytestream.WriteRequest{{Data: content}}, codes.Unimplemented, "zstd"},
		{"NameChanges", name, []*bytestream.WriteRequest{{Data: content[:10]}, {ResourceName: "uploads/other/blobs/" + d.String(), WriteOffset: 10, Data: content[10:], FinishWrite: true}}, codes.InvalidArgument, "changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, reapi.WithMaxBlobBytes(10<<20))
			_, err := write(t, f, tc.res, tc.chunks)
			wantCode(t, err, tc.code, tc.msg)
			if m, _ := f.cas.FindMissing(ctx, []digest.Digest{d}); len(m) != 1 {
				t.Fatal("a failed Write stored the blob")
			}
			if uploads(t, f) != 0 {
				t.Fatal("a failed Write left a partial upload")
			}
		})
	}
	t.Run("QueryUnknown", func(t *testing.T) {
		f := start(t)
		_, err := f.bs.QueryWriteStatus(ctx, &bytestream.QueryWriteStatusRequest{ResourceName: name})
		wantCode(t, err, codes.NotFound, "no upload")
	})
	t.Run("Expiry", func(t *testing.T) {
		f := start(t, reapi.WithUploadExpiry(time.Millisecond))
		write(t, f, name, []*bytestream.WriteRequest{{Data: content[:100]}})
		time.Sleep(10 * time.Millisecond)
		other := []byte("other")
		write(t, f, "uploads/v/blobs/"+digest.OfBytes(other).String(), []*bytestream.WriteRequest{{Data: other, FinishWrite: true}})
		_, err := f.bs.QueryWriteStatus(ctx, &bytestream.QueryWriteStatusRequest{ResourceName: name})
		wantCode(t, err, codes.NotFound, "")
		if uploads(t, f) != 0 {
			t.Fatal("expired upload's file remains")
		}
	})
}
