package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/sandbox"
)

type outputKind int

const (
	kindFile outputKind = iota // REAPI 2.0 output_files
	kindDir                    // REAPI 2.0 output_directories
	kindAny                    // REAPI 2.1 output_paths
)

// output is one declared output.
type output struct {
	name string // as the Command names it (relative to the working directory)
	rel  string // relative to the input root; "" is the root itself
	kind outputKind
}

// parseOutputs validates the Command's declared outputs. output_paths wins
// over output_files/output_directories, as REAPI 2.1 says.
func parseOutputs(cmd *repb.Command) ([]output, error) {
	wd := cmd.GetWorkingDirectory()
	var outs []output
	add := func(name string, kind outputKind) error {
		if name == "" && kind == kindDir {
			outs = append(outs, output{name: name, rel: wd, kind: kind})
			return nil
		}
		if err := sandbox.CheckRelative(name); err != nil {
			return fmt.Errorf("output %q: %v", name, err)
		}
		outs = append(outs, output{name: name, rel: joinRel(wd, name), kind: kind})
		return nil
	}
	if len(cmd.GetOutputPaths()) > 0 {
		for _, p := range cmd.GetOutputPaths() {
			if err := add(p, kindAny); err != nil {
				return nil, err
			}
		}
	} else {
		for _, p := range cmd.GetOutputFiles() {
			if err := add(p, kindFile); err != nil {
				return nil, err
			}
		}
		for _, p := range cmd.GetOutputDirectories() {
			if err := add(p, kindDir); err != nil {
				return nil, err
			}
		}
	}
	seen := map[string]bool{}
	for _, o := range outs {
		if seen[o.rel] {
			return nil, fmt.Errorf("output %q is declared twice", o.name)
		}
		seen[o.rel] = true
	}
	for _, o := range outs {
		if o.kind != kindFile {
			continue
		}
		for p := path.Dir(o.rel); p != "." && p != ""; p = path.Dir(p) {
			for _, q := range outs {
				if q.kind == kindFile && q.rel == p {
					return nil, fmt.Errorf("output file %q is inside output file %q", o.name, q.name)
				}
			}
		}
	}
	return outs, nil
}

// prepareOutputs creates the directories leading up to the outputs (and
// REAPI 2.0 output directories themselves) and makes the output parents
// writable by uid. It returns the directories the sandbox must mount
// read-write, minimal (none inside another).
func prepareOutputs(root string, wd string, outs []output, uid, gid int) ([]string, error) {
	if wd != "" {
		if err := mkdirs(root, wd, -1, -1); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "working directory %q: %v", wd, err)
		}
	}
	var writable []string
	for _, o := range outs {
		if o.rel == "" {
			writable = append(writable, "")
			continue
		}
		parent := path.Dir(o.rel)
		if parent == "." {
			parent = ""
		}
		if err := mkdirs(root, parent, uid, gid); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "output %q: %v", o.name, err)
		}
		if o.kind == kindDir {
			if err := mkdirs(root, o.rel, uid, gid); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "output directory %q: %v", o.name, err)
			}
		}
		writable = append(writable, parent)
	}
	sort.Strings(writable)
	var min []string
	for _, w := range writable {
		if len(min) > 0 {
			last := min[len(min)-1]
			if last == "" || w == last || len(w) > len(last) && w[:len(last)] == last && w[len(last)] == '/' {
				continue
			}
		}
		min = append(min, w)
	}
	return min, nil
}

// mkdirs creates rel below root component by component, refusing to go
// through symlinks or files, and chowns the last one to uid/gid (unless -1).
func mkdirs(root, rel string, uid, gid int) error {
	p := root
	if rel != "" {
		for _, c := range splitRel(rel) {
			p = filepath.Join(p, c)
			fi, err := os.Lstat(p)
			switch {
			case errors.Is(err, os.ErrNotExist):
				if err := os.Mkdir(p, 0o755); err != nil {
					return err
				}
			case err != nil:
				return err
			case fi.Mode()&os.ModeSymlink != 0:
				return fmt.Errorf("%q is an input symlink", c)
			case !fi.IsDir():
				return fmt.Errorf("%q is an input file", c)
			}
		}
	}
	if uid >= 0 {
		return os.Chown(p, uid, gid)
	}
	return nil
}

func splitRel(rel string) []string {
	var out []string
	for len(rel) > 0 {
		i := 0
		for i < len(rel) && rel[i] != '/' {
			i++
		}
		out = append(out, rel[:i])
		if i < len(rel) {
			i++
		}
		rel = rel[i:]
	}
	return out
}

// collector hashes outputs and moves them into the store. It never follows a
// symlink the action made: every path is walked with *at calls from a
// directory descriptor, with openat2 RESOLVE_NO_SYMLINKS for the prefixes.
type collector struct {
	ctx    context.Context
	w      *Worker
	rootFD int
	tmpDir string
	bytes  int64
	nodes  int
}

// ErrOutputTooLarge is reported when the outputs exceed the worker's bound.
var ErrOutputTooLarge = errors.New("outputs too large")

func (c *collector) collect(outs []output, ar *repb.ActionResult) error {
	for _, o := range outs {
		if err := c.one(o, ar); err != nil {
			return err
		}
	}
	return nil
}

func (c *collector) one(o output, ar *repb.ActionResult) error {
	if o.rel == "" {
		fd, err := unix.Openat(c.rootFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		tree, err := c.tree(fd)
		if err != nil {
			return err
		}
		return c.addTree(o, tree, ar)
	}
	parent, base := path.Split(o.rel)
	parentFD := -1
	if parent == "" {
		var err error
		if parentFD, err = unix.Dup(c.rootFD); err != nil {
			return err
		}
	} else {
		var err error
		parentFD, err = unix.Openat2(c.rootFD, parent[:len(parent)-1], &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
		})
		if err != nil {
			// Absent, or the action replaced a parent by a symlink or a
			// file: either way the output was not produced where declared.
			return nil
		}
	}
	defer unix.Close(parentFD)
	var st unix.Stat_t
	if err := unix.Fstatat(parentFD, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil // absent
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if o.kind == kindDir {
			return status.Errorf(codes.FailedPrecondition, "output directory %q is a regular file", o.name)
		}
		d, exec, err := c.file(parentFD, base)
		if err != nil {
			return err
		}
		ar.OutputFiles = append(ar.OutputFiles, &repb.OutputFile{Path: o.name, Digest: d.ToProto(), IsExecutable: exec})
	case unix.S_IFDIR:
		if o.kind == kindFile {
			return status.Errorf(codes.FailedPrecondition, "output file %q is a directory", o.name)
		}
		fd, err := unix.Openat(parentFD, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening output directory %q: %w", o.name, err)
		}
		tree, err := c.tree(fd)
		if err != nil {
			return err
		}
		return c.addTree(o, tree, ar)
	case unix.S_IFLNK:
		target, err := readlinkat(parentFD, base)
		if err != nil {
			return fmt.Errorf("reading output symlink %q: %w", o.name, err)
		}
		isDir := false
		if fd, err := unix.Openat2(c.rootFD, o.rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}); err == nil {
			var ts unix.Stat_t
			if unix.Fstat(fd, &ts) == nil && ts.Mode&unix.S_IFMT == unix.S_IFDIR {
				isDir = true
			}
			unix.Close(fd)
		}
		link := &repb.OutputSymlink{Path: o.name, Target: target}
		switch {
		case o.kind == kindFile && isDir:
			return status.Errorf(codes.FailedPrecondition, "output file %q is a symlink to a directory", o.name)
		case o.kind == kindDir && !isDir:
			return status.Errorf(codes.FailedPrecondition, "output directory %q is a symlink to something not a directory", o.name)
		}
		if o.kind == kindAny {
			ar.OutputSymlinks = append(ar.OutputSymlinks, link)
		}
		if isDir {
			ar.OutputDirectorySymlinks = append(ar.OutputDirectorySymlinks, link)
		} else {
			ar.OutputFileSymlinks = append(ar.OutputFileSymlinks, link)
		}
	}
	return nil // other kinds (fifos, sockets) are not outputs
}

func (c *collector) addTree(o output, tree *repb.Tree, ar *repb.ActionResult) error {
	for _, ch := range tree.Children {
		if _, err := c.putMessage(ch); err != nil {
			return err
		}
	}
	rootD, err := c.putMessage(tree.Root)
	if err != nil {
		return err
	}
	td, err := c.putMessage(tree)
	if err != nil {
		return err
	}
	ar.OutputDirectories = append(ar.OutputDirectories, &repb.OutputDirectory{Path: o.name, TreeDigest: td.ToProto(), RootDirectoryDigest: rootD.ToProto()})
	return nil
}

func (c *collector) putMessage(m proto.Message) (digest.Digest, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return digest.Digest{}, err
	}
	d := digest.OfBytes(b)
	if err := c.w.store.Put(c.ctx, d, bytes.NewReader(b)); err != nil {
		return digest.Digest{}, fmt.Errorf("storing output tree: %w", err)
	}
	return d, nil
}

// tree turns the directory open at fd (which it closes) into a Tree.
func (c *collector) tree(fd int) (*repb.Tree, error) {
	children := map[digest.Digest]*repb.Directory{}
	root, rootD, err := c.dir(fd, children)
	if err != nil {
		return nil, err
	}
	delete(children, rootD)
	t := &repb.Tree{Root: root}
	keys := make([]digest.Digest, 0, len(children))
	for d := range children {
		keys = append(keys, d)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Hash < keys[j].Hash })
	for _, d := range keys {
		t.Children = append(t.Children, children[d])
	}
	return t, nil
}

func (c *collector) dir(fd int, children map[digest.Digest]*repb.Directory) (*repb.Directory, digest.Digest, error) {
	f := os.NewFile(uintptr(fd), "output directory")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, digest.Digest{}, fmt.Errorf("listing output directory: %w", err)
	}
	sort.Strings(names)
	d := &repb.Directory{}
	for _, name := range names {
		c.nodes++
		if c.nodes > c.w.opts.maxOutputNodes {
			return nil, digest.Digest{}, status.Errorf(codes.ResourceExhausted, "%v: more than %d files in output directories", ErrOutputTooLarge, c.w.opts.maxOutputNodes)
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, digest.Digest{}, err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			fdg, exec, err := c.file(fd, name)
			if err != nil {
				return nil, digest.Digest{}, err
			}
			d.Files = append(d.Files, &repb.FileNode{Name: name, Digest: fdg.ToProto(), IsExecutable: exec})
		case unix.S_IFDIR:
			cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, digest.Digest{}, err
			}
			_, cd, err := c.dir(cfd, children)
			if err != nil {
				return nil, digest.Digest{}, err
			}
			d.Directories = append(d.Directories, &repb.DirectoryNode{Name: name, Digest: cd.ToProto()})
		case unix.S_IFLNK:
			t, err := readlinkat(fd, name)
			if err != nil {
				return nil, digest.Digest{}, err
			}
			d.Symlinks = append(d.Symlinks, &repb.SymlinkNode{Name: name, Target: t})
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
	if err != nil {
		return nil, digest.Digest{}, err
	}
	dg := digest.OfBytes(b)
	children[dg] = d
	return d, dg, nil
}

// file hashes the regular file name in dirFD, makes it root-owned and
// read-only, and hands it to the store.
func (c *collector) file(dirFD int, name string) (digest.Digest, bool, error) {
	fd, err := unix.Openat(dirFD, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return digest.Digest{}, false, fmt.Errorf("opening output %q: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return digest.Digest{}, false, fmt.Errorf("output %q is not a regular file", name)
	}
	exec := st.Mode&0o100 != 0
	c.bytes += st.Size
	if c.bytes > c.w.opts.maxOutputBytes {
		return digest.Digest{}, false, status.Errorf(codes.ResourceExhausted, "%v: more than %d bytes", ErrOutputTooLarge, c.w.opts.maxOutputBytes)
	}
	// The action's processes are all gone; from here on the file is ours.
	if err := unix.Fchown(fd, 0, 0); err != nil {
		return digest.Digest{}, false, err
	}
	if err := unix.Fchmod(fd, 0o444); err != nil {
		return digest.Digest{}, false, err
	}
	h := digest.NewHasher()
	if _, err := io.Copy(h, f); err != nil {
		return digest.Digest{}, false, fmt.Errorf("reading output %q: %w", name, err)
	}
	d := h.Digest()
	if fp, ok := c.w.store.(blobstore.FilePutter); ok {
		tmp := filepath.Join(c.tmpDir, strconv.FormatUint(tmpSeq.Add(1), 10))
		if err := unix.Linkat(dirFD, name, unix.AT_FDCWD, tmp, 0); err != nil {
			return digest.Digest{}, false, err
		}
		if err := fp.PutFile(c.ctx, d, tmp); err != nil {
			return digest.Digest{}, false, fmt.Errorf("storing output %q: %w", name, err)
		}
		return d, exec, nil
	}
	if err := c.w.store.Put(c.ctx, d, io.NewSectionReader(f, 0, d.Size)); err != nil {
		return digest.Digest{}, false, fmt.Errorf("storing output %q: %w", name, err)
	}
	return d, exec, nil
}

func readlinkat(dirFD int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirFD, name, buf)
	if err != nil {
		return "", err
	}
	if n == len(buf) {
		return "", fmt.Errorf("symlink %q target too long", name)
	}
	return string(buf[:n]), nil
}

// storeFile stores a worker-written file (stdout, stderr) and returns its
// digest and, if it is at most inline bytes, its content.
func (w *Worker) storeFile(ctx context.Context, p string, inline int64) (digest.Digest, []byte, error) {
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return digest.Empty, nil, nil
		}
		return digest.Digest{}, nil, err
	}
	defer f.Close()
	h := digest.NewHasher()
	var small bytes.Buffer
	if _, err := io.Copy(io.MultiWriter(h, &limitedBuffer{&small, inline}), f); err != nil {
		return digest.Digest{}, nil, err
	}
	d := h.Digest()
	var raw []byte
	if d.Size <= inline {
		raw = small.Bytes()
	}
	if d.IsEmpty() {
		return d, raw, nil
	}
	if fp, ok := w.store.(blobstore.FilePutter); ok {
		if err := os.Chmod(p, 0o444); err != nil {
			return digest.Digest{}, nil, err
		}
		return d, raw, fp.PutFile(ctx, d, p)
	}
	return d, raw, w.store.Put(ctx, d, io.NewSectionReader(f, 0, d.Size))
}

type limitedBuffer struct {
	b *bytes.Buffer
	n int64
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - int64(l.b.Len()); room > 0 {
		if int64(len(p)) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}

func openDir(p string) (int, error) {
	return unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

func closeFD(fd int) { _ = unix.Close(fd) }
