package reapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/internal/grpcstatus"
)

// batchParallelism is how many blobs of one BatchUpdateBlobs are stored at
// the same time.
const batchParallelism = 8

type casServer struct {
	repb.UnimplementedContentAddressableStorageServer
	r        Resolver
	maxDirs  int
	pageSize int
}

// CASOption configures NewCASServer.
type CASOption func(*casServer)

// WithMaxTreeDirectories bounds how many distinct directories GetTree walks
// for one request (RESOURCE_EXHAUSTED beyond). The default is 100000.
func WithMaxTreeDirectories(n int) CASOption {
	return func(s *casServer) {
		if n > 0 {
			s.maxDirs = n
		}
	}
}

// NewCASServer serves the ContentAddressableStorage service over the CAS of
// the instances r resolves.
func NewCASServer(r Resolver, opts ...CASOption) repb.ContentAddressableStorageServer {
	s := &casServer{r: r, maxDirs: 100000, pageSize: 1000}
	for _, o := range opts {
		o(s)
	}
	return s
}

// invalid returns InvalidArgument for a malformed digest, naming it.
func invalid(what string, err error) error {
	return status.Errorf(codes.InvalidArgument, "%s: %v", what, err)
}

func rpcStatus(err error) *rpcstatus.Status {
	if err == nil {
		return &rpcstatus.Status{Code: int32(codes.OK)}
	}
	return status.Convert(grpcstatusFrom(err)).Proto()
}

func (s *casServer) FindMissingBlobs(ctx context.Context, req *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	in, err := resolve(ctx, s.r, req.GetInstanceName(), req.GetDigestFunction())
	if err != nil {
		return nil, err
	}
	ds := make([]digest.Digest, 0, len(req.GetBlobDigests()))
	for i, p := range req.GetBlobDigests() {
		d, err := digest.FromProto(p)
		if err != nil {
			return nil, invalid(fmt.Sprintf("blob_digests[%d]", i), err)
		}
		ds = append(ds, d)
	}
	missing, err := in.CAS.FindMissing(ctx, ds)
	if err != nil {
		return nil, grpcstatusFrom(err)
	}
	resp := &repb.FindMissingBlobsResponse{}
	for _, d := range missing {
		resp.MissingBlobDigests = append(resp.MissingBlobDigests, d.ToProto())
	}
	return resp, nil
}

func (s *casServer) BatchUpdateBlobs(ctx context.Context, req *repb.BatchUpdateBlobsRequest) (*repb.BatchUpdateBlobsResponse, error) {
	in, err := resolve(ctx, s.r, req.GetInstanceName(), req.GetDigestFunction())
	if err != nil {
		return nil, err
	}
	var total int64
	for _, r := range req.GetRequests() {
		total += int64(len(r.GetData()))
	}
	if total > MaxBatchTotalSizeBytes {
		return nil, status.Errorf(codes.InvalidArgument, "BatchUpdateBlobs carries %d bytes, more than the %d bytes announced in max_batch_total_size_bytes; use ByteStream Write", total, MaxBatchTotalSizeBytes)
	}
	// Blobs are stored concurrently: each Put may wait for an fsync, and
	// concurrent fsyncs share journal commits.
	resp := &repb.BatchUpdateBlobsResponse{Responses: make([]*repb.BatchUpdateBlobsResponse_Response, len(req.GetRequests()))}
	sem := make(chan struct{}, batchParallelism)
	var wg sync.WaitGroup
	for i, r := range req.GetRequests() {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			resp.Responses[i] = &repb.BatchUpdateBlobsResponse_Response{
				Digest: r.GetDigest(),
				Status: rpcStatus(s.updateOne(ctx, in, i, r)),
			}
		}()
	}
	wg.Wait()
	return resp, nil
}

func (s *casServer) updateOne(ctx context.Context, in *Instance, i int, r *repb.BatchUpdateBlobsRequest_Request) error {
	d, err := digest.FromProto(r.GetDigest())
	if err != nil {
		return invalid(fmt.Sprintf("requests[%d].digest", i), err)
	}
	if r.GetCompressor() != repb.Compressor_IDENTITY {
		return status.Errorf(codes.InvalidArgument, "blob %s: compressor %s is not supported; this farm announces no compressors", d, r.GetCompressor())
	}
	if int64(len(r.GetData())) != d.Size {
		return status.Errorf(codes.InvalidArgument, "blob %s: data has %d bytes, the digest says %d", d, len(r.GetData()), d.Size)
	}
	return grpcstatusFrom(in.CAS.Put(ctx, d, bytes.NewReader(r.GetData())))
}

func (s *casServer) BatchReadBlobs(ctx context.Context, req *repb.BatchReadBlobsRequest) (*repb.BatchReadBlobsResponse, error) {
	in, err := resolve(ctx, s.r, req.GetInstanceName(), req.GetDigestFunction())
	if err != nil {
		return nil, err
	}
	ds := make([]digest.Digest, 0, len(req.GetDigests()))
	var total int64
	for i, p := range req.GetDigests() {
		d, err := digest.FromProto(p)
		if err != nil {
			return nil, invalid(fmt.Sprintf("digests[%d]", i), err)
		}
		total += d.Size
		ds = append(ds, d)
	}
	if total > MaxBatchTotalSizeBytes {
		return nil, status.Errorf(codes.InvalidArgument, "BatchReadBlobs asks for %d bytes, more than the %d bytes announced in max_batch_total_size_bytes; use ByteStream Read", total, MaxBatchTotalSizeBytes)
	}
	resp := &repb.BatchReadBlobsResponse{}
	for _, d := range ds {
		data, err := readBlob(ctx, in, d)
		resp.Responses = append(resp.Responses, &repb.BatchReadBlobsResponse_Response{
			Digest:     d.ToProto(),
			Data:       data,
			Compressor: repb.Compressor_IDENTITY,
			Status:     rpcStatus(err),
		})
	}
	return resp, nil
}

// readBlob reads a whole blob of a size the caller bounded.
func readBlob(ctx context.Context, in *Instance, d digest.Digest) ([]byte, error) {
	rc, err := in.CAS.Get(ctx, d, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, d.Size)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d, err)
	}
	return b, nil
}

// grpcstatusFrom turns a store error into a status error with its code.
func grpcstatusFrom(err error) error { return grpcstatus.FromStoreError(err) }
