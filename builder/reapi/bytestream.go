package reapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

// ReadChunkBytes is the largest data chunk ByteStream Read sends.
const ReadChunkBytes = 1 << 20

type byteStreamServer struct {
	bytestream.UnimplementedByteStreamServer
	r       Resolver
	dir     string
	expiry  time.Duration
	maxBlob int64
	now     func() time.Time

	mu      sync.Mutex
	uploads map[string]*upload
}

// upload is a partial, resumable ByteStream upload: a file in the upload
// directory holding the first committed bytes of the blob. It is never
// visible in the CAS; on finish_write its content is Put (and so verified).
type upload struct {
	mu        sync.Mutex // held by the stream that writes it
	key       string
	f         *os.File
	committed atomic.Int64 // written under mu, read by QueryWriteStatus
	last      atomic.Int64 // UnixNano of the last data
}

// ByteStreamOption configures NewByteStreamServer.
type ByteStreamOption func(*byteStreamServer) error

// WithUploadDir keeps partial uploads in dir, which the server owns: its
// content is deleted when the server is created. The default is a new
// directory under os.TempDir(). Put it on the CAS's file system.
func WithUploadDir(dir string) ByteStreamOption {
	return func(s *byteStreamServer) error {
		if dir == "" {
			return errors.New("WithUploadDir: empty directory name")
		}
		s.dir = dir
		return nil
	}
}

// WithUploadExpiry deletes partial uploads that saw no data for d. The
// default is 15 minutes.
func WithUploadExpiry(d time.Duration) ByteStreamOption {
	return func(s *byteStreamServer) error {
		if d <= 0 {
			return fmt.Errorf("WithUploadExpiry(%v): the expiry must be positive", d)
		}
		s.expiry = d
		return nil
	}
}

// WithMaxBlobBytes rejects uploads of blobs larger than n with
// INVALID_ARGUMENT before any data is taken. The default is
// blobstore.DefaultMaxBlobBytes.
func WithMaxBlobBytes(n int64) ByteStreamOption {
	return func(s *byteStreamServer) error {
		if n <= 0 {
			return fmt.Errorf("WithMaxBlobBytes(%d): the limit must be positive", n)
		}
		s.maxBlob = n
		return nil
	}
}

// NewByteStreamServer serves ByteStream Read, Write and QueryWriteStatus
// over the CAS of the instances r resolves. Resource names:
//
//	{instance_name/}blobs/{hash}/{size}                                 Read
//	{instance_name/}uploads/{uuid}/blobs/{hash}/{size}{/metadata}       Write, QueryWriteStatus
//
// (also with a "sha256/" segment before the hash, and as
// compressed-blobs/identity/...; other compressors are UNIMPLEMENTED).
// Writes are resumable: QueryWriteStatus reports the committed size of a
// partial upload, and a Write whose first write_offset equals it continues.
func NewByteStreamServer(r Resolver, opts ...ByteStreamOption) (bytestream.ByteStreamServer, error) {
	s := &byteStreamServer{
		r:       r,
		expiry:  15 * time.Minute,
		maxBlob: blobstore.DefaultMaxBlobBytes,
		now:     time.Now,
		uploads: map[string]*upload{},
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "hallmark-uploads-")
		if err != nil {
			return nil, fmt.Errorf("bytestream: %w", err)
		}
		s.dir = d
	} else {
		if err := os.RemoveAll(s.dir); err != nil {
			return nil, fmt.Errorf("bytestream: cleaning %s: %w", s.dir, err)
		}
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return nil, fmt.Errorf("bytestream: %w", err)
		}
	}
	return s, nil
}

func resourceError(err error) error {
	if errors.Is(err, ErrCompressed) {
		return status.Error(codes.Unimplemented, err.Error())
	}
	return status.Error(codes.InvalidArgument, err.Error())
}

func (s *byteStreamServer) Read(req *bytestream.ReadRequest, stream bytestream.ByteStream_ReadServer) error {
	ctx := stream.Context()
	res, err := ParseReadResource(req.GetResourceName())
	if err != nil {
		return resourceError(err)
	}
	in, err := s.r.Resolve(ctx, res.Instance)
	if err != nil {
		return err
	}
	d, off, limit := res.Digest, req.GetReadOffset(), req.GetReadLimit()
	if off < 0 || off > d.Size {
		return status.Errorf(codes.OutOfRange, "read_offset %d is outside blob %s", off, d)
	}
	if limit < 0 {
		return status.Errorf(codes.InvalidArgument, "read_limit %d is negative", limit)
	}
	rc, err := in.CAS.Get(ctx, d, off)
	if err != nil {
		return grpcstatusFrom(err)
	}
	defer rc.Close()
	n := d.Size - off
	if limit > 0 && limit < n {
		n = limit
	}
	buf := make([]byte, min(n, ReadChunkBytes))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := io.ReadFull(rc, buf[:k]); err != nil {
			return status.Errorf(codes.DataLoss, "blob %s: stored content ends early: %v", d, err)
		}
		if err := stream.Send(&bytestream.ReadResponse{Data: buf[:k]}); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func uploadKey(in *Instance, res Resource) string {
	return in.Name + "\x00" + res.UUID + "\x00" + res.Digest.String()
}

func (s *byteStreamServer) Write(stream bytestream.ByteStream_WriteServer) error {
	ctx := stream.Context()
	req, err := stream.Recv()
	if err == io.EOF {
		return status.Error(codes.InvalidArgument, "Write stream carried no request")
	}
	if err != nil {
		return err
	}
	name := req.GetResourceName()
	res, err := ParseWriteResource(name)
	if err != nil {
		return resourceError(err)
	}
	in, err := s.r.Resolve(ctx, res.Instance)
	if err != nil {
		return err
	}
	d := res.Digest
	if d.Size > s.maxBlob {
		return status.Errorf(codes.InvalidArgument, "blob %s is larger than the limit of %d bytes", d, s.maxBlob)
	}
	done := func() error { return stream.SendAndClose(&bytestream.WriteResponse{CommittedSize: d.Size}) }
	if missing, err := in.CAS.FindMissing(ctx, []digest.Digest{d}); err != nil {
		return grpcstatusFrom(err)
	} else if len(missing) == 0 {
		s.drop(uploadKey(in, res))
		return done() // someone else stored it already
	}
	key := uploadKey(in, res)
	s.sweep()
	// The whole blob in one message: no temporary file.
	if req.GetFinishWrite() && req.GetWriteOffset() == 0 && !s.exists(key) {
		if int64(len(req.GetData())) != d.Size {
			return status.Errorf(codes.InvalidArgument, "blob %s: finish_write after %d bytes, the digest says %d", d, len(req.GetData()), d.Size)
		}
		if err := in.CAS.Put(ctx, d, bytes.NewReader(req.GetData())); err != nil {
			return grpcstatusFrom(err)
		}
		return done()
	}
	u, err := s.open(key)
	if err != nil {
		return status.Errorf(codes.Internal, "upload of %s: %v", d, err)
	}
	if !u.mu.TryLock() {
		return status.Errorf(codes.Aborted, "another Write to %s is in progress", clip(name))
	}
	defer u.mu.Unlock()
	if u.f == nil { // expired or finished while we waited
		return status.Errorf(codes.Aborted, "upload %s was just finished or expired; retry", clip(name))
	}
	fail := func(err error) error {
		s.remove(u)
		return err
	}
	first := true
	for {
		if !first && req.GetResourceName() != "" && req.GetResourceName() != name {
			return fail(status.Errorf(codes.InvalidArgument, "resource_name changed within one Write from %q to %q", clip(name), clip(req.GetResourceName())))
		}
		off := req.GetWriteOffset()
		committed := u.committed.Load()
		if first && off == 0 && committed > 0 {
			// The client starts over instead of resuming.
			if err := u.f.Truncate(0); err != nil {
				return fail(status.Errorf(codes.Internal, "upload of %s: %v", d, err))
			}
			committed = 0
			u.committed.Store(0)
		}
		if off != committed {
			return status.Errorf(codes.InvalidArgument, "write_offset %d, but %d bytes of %s are committed; resume at the committed size (QueryWriteStatus)", off, committed, d)
		}
		data := req.GetData()
		if committed+int64(len(data)) > d.Size {
			return fail(status.Errorf(codes.InvalidArgument, "blob %s: more than %d bytes written", d, d.Size))
		}
		if _, err := u.f.WriteAt(data, committed); err != nil {
			return fail(status.Errorf(codes.Internal, "upload of %s: %v", d, err))
		}
		committed += int64(len(data))
		u.committed.Store(committed)
		u.last.Store(s.now().UnixNano())
		if req.GetFinishWrite() {
			if committed != d.Size {
				return fail(status.Errorf(codes.InvalidArgument, "blob %s: finish_write after %d bytes, the digest says %d", d, committed, d.Size))
			}
			err := s.commit(ctx, in.CAS, d, u)
			s.remove(u)
			if err != nil {
				return grpcstatusFrom(err)
			}
			return done()
		}
		first = false
		req, err = stream.Recv()
		if err == io.EOF {
			return status.Errorf(codes.InvalidArgument, "Write of %s ended after %d bytes without finish_write; resume at the committed size", d, committed)
		}
		if err != nil {
			return err // the partial upload stays for a resume
		}
	}
}

// commit stores a finished upload. A store that can take the file over
// (FilePutter: same file system) verifies it and renames it into place,
// sparing a second copy of every uploaded byte; others copy it.
func (s *byteStreamServer) commit(ctx context.Context, cas blobstore.Store, d digest.Digest, u *upload) error {
	fp, ok := blobstore.As[blobstore.FilePutter](cas)
	if !ok {
		return cas.Put(ctx, d, io.NewSectionReader(u.f, 0, d.Size))
	}
	return fp.PutFile(ctx, d, u.f.Name())
}

func (s *byteStreamServer) QueryWriteStatus(ctx context.Context, req *bytestream.QueryWriteStatusRequest) (*bytestream.QueryWriteStatusResponse, error) {
	res, err := ParseWriteResource(req.GetResourceName())
	if err != nil {
		return nil, resourceError(err)
	}
	in, err := s.r.Resolve(ctx, res.Instance)
	if err != nil {
		return nil, err
	}
	missing, err := in.CAS.FindMissing(ctx, []digest.Digest{res.Digest})
	if err != nil {
		return nil, grpcstatusFrom(err)
	}
	if len(missing) == 0 {
		return &bytestream.QueryWriteStatusResponse{CommittedSize: res.Digest.Size, Complete: true}, nil
	}
	s.mu.Lock()
	u := s.uploads[uploadKey(in, res)]
	s.mu.Unlock()
	if u == nil {
		return nil, status.Errorf(codes.NotFound, "no upload %s in progress", clip(req.GetResourceName()))
	}
	return &bytestream.QueryWriteStatusResponse{CommittedSize: u.committed.Load()}, nil
}

func (s *byteStreamServer) exists(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uploads[key] != nil
}

// open returns the partial upload for key, creating it if needed.
func (s *byteStreamServer) open(key string) (*upload, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.uploads[key]; u != nil {
		return u, nil
	}
	f, err := os.CreateTemp(s.dir, "upload-")
	if err != nil {
		return nil, err
	}
	u := &upload{key: key, f: f}
	u.last.Store(s.now().UnixNano())
	s.uploads[key] = u
	return u, nil
}

// remove deletes u's file and forgets it; the caller holds u.mu.
func (s *byteStreamServer) remove(u *upload) {
	s.mu.Lock()
	if s.uploads[u.key] == u {
		delete(s.uploads, u.key)
	}
	s.mu.Unlock()
	if u.f != nil {
		u.f.Close()
		os.Remove(u.f.Name())
		u.f = nil
	}
}

// drop removes the partial upload for key if nobody is writing it.
func (s *byteStreamServer) drop(key string) {
	s.mu.Lock()
	u := s.uploads[key]
	s.mu.Unlock()
	if u != nil && u.mu.TryLock() {
		s.remove(u)
		u.mu.Unlock()
	}
}

// sweep removes partial uploads idle for longer than the expiry.
func (s *byteStreamServer) sweep() {
	now := s.now()
	s.mu.Lock()
	var old []*upload
	for _, u := range s.uploads {
		if now.Sub(time.Unix(0, u.last.Load())) > s.expiry {
			old = append(old, u)
		}
	}
	s.mu.Unlock()
	for _, u := range old {
		if u.mu.TryLock() {
			s.remove(u)
			u.mu.Unlock()
		}
	}
}
