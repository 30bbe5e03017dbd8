package actioncache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// maxEntryBytes bounds what Get reads from one entry file.
const maxEntryBytes = 64 << 20

// Disk is a Cache in a directory of the local file system.
//
// # On-disk layout
//
//	DIR/<ns>/<h0h1>/<hash>   the ActionResult for the action whose digest has
//	                         this hash, as binary protobuf (deterministic
//	                         marshalling). <ns> is the first 16 hex
//	                         characters of the SHA-256 of the instance name
//	                         (so "" and every tenant get their own directory
//	                         and names need no escaping); <h0h1> the first two
//	                         characters of the action hash.
//	DIR/tmp/                 entries being written; emptied on open.
//
// An entry is written to tmp/, fsynced and renamed into place (then the
// directory is fsynced), so a reader sees the old or the new result, never a
// torn one. An entry that does not parse is treated as absent.
type Disk struct {
	dir, tmp string
	noSync   bool
}

// DiskOption configures NewDisk.
type DiskOption func(*Disk)

// WithoutFsyncUnsafe skips the fsyncs of each entry and its directory. An
// entry is still renamed into place atomically, so a killed server never
// leaves a torn entry, but after a power loss a recent entry may be lost or
// empty (and is then treated as absent). The default syncs.
func WithoutFsyncUnsafe() DiskOption {
	return func(c *Disk) { c.noSync = true }
}

var _ Cache = (*Disk)(nil)

// NewDisk opens (creating it if needed) the cache in dir.
func NewDisk(dir string, opts ...DiskOption) (*Disk, error) {
	c := &Disk{dir: dir, tmp: filepath.Join(dir, "tmp")}
	for _, o := range opts {
		o(c)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("action cache: %w", err)
	}
	if err := os.RemoveAll(c.tmp); err != nil {
		return nil, fmt.Errorf("action cache: removing leftovers: %w", err)
	}
	if err := os.Mkdir(c.tmp, 0o700); err != nil {
		return nil, fmt.Errorf("action cache: %w", err)
	}
	return c, nil
}

// EntryPath returns where a Disk rooted at dir keeps the result of action in
// instance.
func EntryPath(dir, instance string, action digest.Digest) string {
	ns := sha256.Sum256([]byte(instance))
	return filepath.Join(dir, hex.EncodeToString(ns[:])[:16], action.Hash[:2], action.Hash)
}

// Get implements Cache.
func (c *Disk) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(EntryPath(c.dir, instance, action))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &NotFoundError{Instance: instance, Action: action}
	}
	if err != nil {
		return nil, fmt.Errorf("action cache: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEntryBytes+1))
	if err != nil {
		return nil, fmt.Errorf("action cache: %w", err)
	}
	ar := &repb.ActionResult{}
	if len(b) > maxEntryBytes || proto.Unmarshal(b, ar) != nil {
		return nil, &NotFoundError{Instance: instance, Action: action}
	}
	return ar, nil
}

// Put implements Cache.
func (c *Disk) Put(ctx context.Context, instance string, action digest.Digest, ar *repb.ActionResult) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ar)
	if err != nil {
		return fmt.Errorf("action cache: %w", err)
	}
	final := EntryPath(c.dir, instance, action)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return fmt.Errorf("action cache: %w", err)
	}
	f, err := os.CreateTemp(c.tmp, "ac-")
	if err != nil {
		return fmt.Errorf("action cache: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("action cache: %w", err)
	}
	if !c.noSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("action cache: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("action cache: %w", err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return fmt.Errorf("action cache: %w", err)
	}
	if c.noSync {
		return nil
	}
	d, err := os.Open(filepath.Dir(final))
	if err != nil {
		return fmt.Errorf("action cache: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("action cache: fsync: %w", err)
	}
	return nil
}
