package trace_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/execlog"
	"github.com/hallmark-build/hallmark/signer/trace"
)

// In-memory fakes of the tracer's read interfaces.
type memLog struct{ recs []execlog.Record }

func (l *memLog) Refresh() error      { return nil }
func (l *memLog) Verify(uint64) error { return nil }
func (l *memLog) Lookup(d digest.Digest) []execlog.Record {
	var out []execlog.Record
	for _, r := range l.recs {
		for _, o := range r.Outputs {
			if o.Digest == d {
				out = append(out, r)
			}
		}
	}
	return out
}

type memCAS map[digest.Digest][]byte

func (c memCAS) Get(_ context.Context, d digest.Digest, limit int64) ([]byte, error) {
	b, ok := c[d]
	if !ok {
		return nil, fmt.Errorf("%s missing", d)
	}
	return b, nil
}

func (c memCAS) put(b []byte) digest.Digest { d := digest.OfBytes(b); c[d] = b; return d }

type anySource struct{}

func (anySource) At(context.Context, string) (trace.SourceTree, error) { return anySource{}, nil }
func (anySource) Check(context.Context, string, digest.Digest) error   { return nil }
func (anySource) Close() error                                         { return nil }

// FuzzTraceInputRoot feeds arbitrary bytes as an action's input root
// Directory: the walk must refuse or succeed, never panic or hang.
func FuzzTraceInputRoot(f *testing.F) {
	seed := func(m proto.Message) []byte { b, _ := proto.Marshal(m); return b }
	fd := digest.OfBytes([]byte("x")).ToProto()
	f.Add(seed(&repb.Directory{Files: []*repb.FileNode{{Name: "src", Digest: fd}}}))
	f.Add(seed(&repb.Directory{Files: []*repb.FileNode{{Name: "..", Digest: fd}, {Name: "a/b", Digest: fd}}}))
	f.Add(seed(&repb.Directory{Directories: []*repb.DirectoryNode{{Name: "external", Digest: fd}}}))
	f.Add(seed(&repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: "/etc/passwd"}}}))
	f.Add([]byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, root []byte) {
		cas := memCAS{}
		cas.put([]byte("x"))
		rd := cas.put(root)
		cd := cas.put(seed(&repb.Command{Arguments: []string{"true"}}))
		ad := cas.put(seed(&repb.Action{CommandDigest: cd.ToProto(), InputRootDigest: rd.ToProto()}))
		out := digest.OfBytes([]byte("out"))
		log := &memLog{recs: []execlog.Record{{Seq: 1, Tenant: "t", Action: ad, Command: cd, InputRoot: rd,
			Outputs: []execlog.OutputFile{{Path: "bazel-out/o", Digest: out}}}}}
		tr, err := trace.New(log, cas, anySource{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := tr.Trace(context.Background(), trace.Request{Tenant: "t", Commit: "c", Artifacts: []trace.Artifact{{Name: "o", Digest: out}}})
		if err != nil {
			if res != nil || !errors.Is(err, trace.ErrRefused) {
				t.Fatalf("Trace = %v, %v", res, err)
			}
			return
		}
		if len(res.Actions) != 1 {
			t.Fatalf("traced %d actions", len(res.Actions))
		}
	})
}
