package reapi

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

// MaxDirectoryBytes bounds the size of one Directory blob GetTree reads.
const MaxDirectoryBytes = 16 << 20

// maxPageBytes keeps a GetTree response well under gRPC's default 4 MiB
// message limit.
const maxPageBytes = 2 << 20

// ValidateDirectory checks what the farm relies on in a Directory: every
// name is a single path component (not empty, ".", "..", without "/" or NUL)
// and unique within the directory, and every digest is well-formed.
func ValidateDirectory(dir *repb.Directory) error {
	seen := map[string]bool{}
	name := func(kind, n string) error {
		if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") {
			return fmt.Errorf("%s name %q is not a single path component", kind, clip(n))
		}
		if seen[n] {
			return fmt.Errorf("name %q appears twice", clip(n))
		}
		seen[n] = true
		return nil
	}
	for _, f := range dir.GetFiles() {
		if err := name("file", f.GetName()); err != nil {
			return err
		}
		if _, err := digest.FromProto(f.GetDigest()); err != nil {
			return fmt.Errorf("file %q: %w", clip(f.GetName()), err)
		}
	}
	for _, d := range dir.GetDirectories() {
		if err := name("directory", d.GetName()); err != nil {
			return err
		}
		if _, err := digest.FromProto(d.GetDigest()); err != nil {
			return fmt.Errorf("directory %q: %w", clip(d.GetName()), err)
		}
	}
	for _, l := range dir.GetSymlinks() {
		if err := name("symlink", l.GetName()); err != nil {
			return err
		}
		if l.GetTarget() == "" {
			return fmt.Errorf("symlink %q has an empty target", clip(l.GetName()))
		}
	}
	return nil
}

// ParseDirectory decodes and validates a Directory blob.
func ParseDirectory(b []byte) (*repb.Directory, error) {
	dir := &repb.Directory{}
	if err := proto.Unmarshal(b, dir); err != nil {
		return nil, fmt.Errorf("not a Directory message: %w", err)
	}
	if err := ValidateDirectory(dir); err != nil {
		return nil, err
	}
	return dir, nil
}

func (s *casServer) GetTree(req *repb.GetTreeRequest, stream repb.ContentAddressableStorage_GetTreeServer) error {
	ctx := stream.Context()
	in, err := resolve(ctx, s.r, req.GetInstanceName(), req.GetDigestFunction())
	if err != nil {
		return err
	}
	root, err := digest.FromProto(req.GetRootDigest())
	if err != nil {
		return invalid("root_digest", err)
	}
	if req.GetPageSize() < 0 {
		return status.Errorf(codes.InvalidArgument, "page_size %d is negative", req.GetPageSize())
	}
	pageSize := int(req.GetPageSize())
	if pageSize == 0 || pageSize > 10*s.pageSize {
		pageSize = s.pageSize
	}
	offset := 0
	if t := req.GetPageToken(); t != "" {
		offset, err = strconv.Atoi(t)
		if err != nil || offset < 0 {
			return status.Errorf(codes.InvalidArgument, "page_token %q was not issued by this server", clip(t))
		}
	}
	var page []*repb.Directory
	pageBytes := 0
	flush := func(next string) error {
		err := stream.Send(&repb.GetTreeResponse{Directories: page, NextPageToken: next})
		page, pageBytes = nil, 0
		return err
	}
	n := 0 // directories emitted in BFS order so far, including skipped ones
	err = walkTree(ctx, in.CAS, root, s.maxDirs, func(dir *repb.Directory, size int) error {
		n++
		if n <= offset {
			return nil
		}
		if len(page) >= pageSize || (len(page) > 0 && pageBytes+size > maxPageBytes) {
			if err := flush(strconv.Itoa(n - 1)); err != nil {
				return err
			}
		}
		page = append(page, dir)
		pageBytes += size
		return nil
	})
	if err != nil {
		return err
	}
	return flush("")
}

// walkTree visits the directories under root breadth first, each distinct
// directory once. A missing root is NOT_FOUND; missing subdirectories are
// left out, as REAPI says for GetTree. A malformed directory is
// INVALID_ARGUMENT; more than maxDirs distinct directories RESOURCE_EXHAUSTED.
func walkTree(ctx context.Context, cas blobstore.Store, root digest.Digest, maxDirs int, visit func(*repb.Directory, int) error) error {
	seen := digest.Set{root: {}}
	queue := []digest.Digest{root}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if d.Size > MaxDirectoryBytes {
			return status.Errorf(codes.InvalidArgument, "directory %s is larger than %d bytes", d, MaxDirectoryBytes)
		}
		b, err := readBlob(ctx, &Instance{CAS: cas}, d)
		if errors.Is(err, blobstore.ErrNotFound) && d != root {
			continue
		}
		if err != nil {
			return grpcstatusFrom(fmt.Errorf("directory %s: %w", d, err))
		}
		dir, err := ParseDirectory(b)
		if err != nil {
			return status.Errorf(codes.InvalidArgument, "directory %s: %v", d, err)
		}
		for _, c := range dir.GetDirectories() {
			cd, _ := digest.FromProto(c.GetDigest()) // validated above
			if seen.Has(cd) {
				continue
			}
			if len(seen) >= maxDirs {
				return status.Errorf(codes.ResourceExhausted, "tree %s has more than %d distinct directories", root, maxDirs)
			}
			seen.Add(cd)
			queue = append(queue, cd)
		}
		if err := visit(dir, len(b)); err != nil {
			return err
		}
	}
	return nil
}
