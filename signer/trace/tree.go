package trace

import (
	"fmt"
	"sort"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// tnode merges the files that actions read from one external repository
// into one tree.
type tnode struct {
	files map[string]*repb.FileNode
	dirs  map[string]*tnode
}

func (n *tnode) add(rel string, d digest.Digest, exec bool) error {
	parts := strings.Split(rel, "/")
	cur := n
	for _, dn := range parts[:len(parts)-1] {
		if cur.files[dn] != nil {
			return fmt.Errorf("%q is a file in one action's inputs and a directory in another's", dn)
		}
		if cur.dirs == nil {
			cur.dirs = map[string]*tnode{}
		}
		next := cur.dirs[dn]
		if next == nil {
			next = &tnode{}
			cur.dirs[dn] = next
		}
		cur = next
	}
	fn := parts[len(parts)-1]
	if cur.dirs[fn] != nil {
		return fmt.Errorf("%q is a directory in one action's inputs and a file in another's", fn)
	}
	if old := cur.files[fn]; old != nil {
		if old.GetDigest().GetHash() != d.Hash || old.GetDigest().GetSizeBytes() != d.Size || old.GetIsExecutable() != exec {
			return fmt.Errorf("actions read different versions of this third-party file")
		}
		return nil
	}
	if cur.files == nil {
		cur.files = map[string]*repb.FileNode{}
	}
	cur.files[fn] = &repb.FileNode{Name: fn, Digest: d.ToProto(), IsExecutable: exec}
	return nil
}

// digest returns the digest of the canonical REAPI Directory for n: entries
// sorted by name, deterministic protobuf encoding.
func (n *tnode) digest() (digest.Digest, error) {
	dir := &repb.Directory{}
	for _, name := range sortedKeys(n.files) {
		dir.Files = append(dir.Files, n.files[name])
	}
	for _, name := range sortedKeys(n.dirs) {
		d, err := n.dirs[name].digest()
		if err != nil {
			return digest.Digest{}, err
		}
		dir.Directories = append(dir.Directories, &repb.DirectoryNode{Name: name, Digest: d.ToProto()})
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(dir)
	if err != nil {
		return digest.Digest{}, err
	}
	return digest.OfBytes(b), nil
}

func (n *tnode) count() int {
	c := len(n.files)
	for _, d := range n.dirs {
		c += d.count()
	}
	return c
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
