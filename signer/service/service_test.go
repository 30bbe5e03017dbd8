package service_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/signer/dsse"
	"github.com/hallmark-build/hallmark/signer/key"
	"github.com/hallmark-build/hallmark/signer/provenance"
	"github.com/hallmark-build/hallmark/signer/service"
	"github.com/hallmark-build/hallmark/signer/signerpb"
)

const commit = "89abcdef0123456789abcdef0123456789abcdef"

type fakeTracer struct {
	err  error
	last service.Query
}

func (f *fakeTracer) Trace(ctx context.Context, q service.Query) (*service.Trace, error) {
	f.last = q
	if f.err != nil {
		return nil, f.err
	}
	return &service.Trace{
		Actions:     []provenance.Action{{Digest: digest.OfBytes([]byte("a")), Arguments: []string{"gcc", "-c"}}},
		Counts:      provenance.Counts{Source: 1, Generated: 1},
		ClientFiles: nil,
		StartedOn:   time.Unix(100, 0), FinishedOn: time.Unix(200, 0),
	}, nil
}

func newServer(t *testing.T, tr service.Tracer) (signerpb.SignerClient, key.Signer) {
	t.Helper()
	dir := t.TempDir()
	if _, err := key.Generate(dir); err != nil {
		t.Fatal(err)
	}
	k, err := key.LoadFile(filepath.Join(dir, key.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := service.New(k, tr, service.WithFarmID("test-farm"))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	service.Register(g, srv)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	client, cc, err := service.Dial("tcp:" + lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return client, k
}

func request(artifacts ...[]byte) *signerpb.MakeManifestRequest {
	req := &signerpb.MakeManifestRequest{Tenant: "team-a", Commit: commit, Targets: []string{"//:bin"}}
	for i, a := range artifacts {
		d := digest.OfBytes(a)
		req.Artifacts = append(req.Artifacts, &signerpb.Artifact{Name: fmt.Sprintf("out/%d", i), Sha256: d.Hash, SizeBytes: d.Size})
	}
	return req
}

func TestMakeManifest(t *testing.T) {
	ctx := context.Background()
	tr := &fakeTracer{}
	client, k := newServer(t, tr)
	resp, err := client.MakeManifest(ctx, request([]byte("one"), []byte("two")))
	if err != nil {
		t.Fatal(err)
	}
	env, err := dsse.Parse(resp.GetEnvelope())
	if err != nil {
		t.Fatal(err)
	}
	v, err := dsse.NewVerifier(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	payload, err := env.Verify(dsse.PayloadTypeInToto, v)
	if err != nil {
		t.Fatal(err)
	}
	st, err := provenance.Parse(payload)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Subject) != 2 || st.Subject[1].Digest["sha256"] != digest.OfBytes([]byte("two")).Hash {
		t.Errorf("subjects = %+v", st.Subject)
	}
	if got := st.Predicate.BuildDefinition.InternalParameters; got.FarmID != "test-farm" || got.Tenant != "team-a" {
		t.Errorf("internalParameters = %+v", got)
	}
	if got := st.Predicate.RunDetails.Builder.ID; got != "https://hallmark.build/farm/test-farm" {
		t.Errorf("builder id = %q", got)
	}
	if tr.last.Commit != commit || len(tr.last.Artifacts) != 2 {
		t.Errorf("tracer saw %+v", tr.last)
	}
	if resp.GetKeyId() != k.KeyID() {
		t.Errorf("key id %q, want %q", resp.GetKeyId(), k.KeyID())
	}
	pk, err := client.GetPublicKey(ctx, &signerpb.GetPublicKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := dsse.ParsePublicKeyPEM([]byte(pk.GetPublicKeyPem()))
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := dsse.KeyID(pub); id != k.KeyID() {
		t.Errorf("GetPublicKey returned key %s, want %s", id, k.KeyID())
	}
}

func TestMakeManifestRefusals(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		tracerErr error
		edit      func(*signerpb.MakeManifestRequest)
		wantCode  codes.Code
		wantMsg   string
	}{
		{"NoTenant", nil, func(r *signerpb.MakeManifestRequest) { r.Tenant = "" }, codes.InvalidArgument, "missing tenant"},
		{"ShortCommit", nil, func(r *signerpb.MakeManifestRequest) { r.Commit = "abc" }, codes.InvalidArgument, "commit"},
		{"NoArtifacts", nil, func(r *signerpb.MakeManifestRequest) { r.Artifacts = nil }, codes.InvalidArgument, "no artifacts"},
		{"BadDigest", nil, func(r *signerpb.MakeManifestRequest) { r.Artifacts[0].Sha256 = "XYZ" }, codes.InvalidArgument, "artifact 0"},
		{"DuplicateArtifact", nil, func(r *signerpb.MakeManifestRequest) { r.Artifacts = append(r.Artifacts, r.Artifacts[0]) }, codes.InvalidArgument, "given twice"},
		{"TracerRefuses", errors.New(`input "src/main.go" (abc/3): not in commit`), nil, codes.FailedPrecondition, `refused: input "src/main.go"`},
		{"TracerStatus", status.Error(codes.NotFound, "no logged action produced out/0"), nil, codes.NotFound, "no logged action"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, _ := newServer(t, &fakeTracer{err: tc.tracerErr})
			req := request([]byte("one"))
			if tc.edit != nil {
				tc.edit(req)
			}
			resp, err := client.MakeManifest(ctx, req)
			if status.Code(err) != tc.wantCode || !strings.Contains(status.Convert(err).Message(), tc.wantMsg) {
				t.Fatalf("MakeManifest = %v, want %v containing %q", err, tc.wantCode, tc.wantMsg)
			}
			if resp != nil {
				t.Fatalf("refused request returned a response: %v", resp)
			}
		})
	}
}

// TestAPISurfaceSignsNoCallerBytes asserts the signer's API has no method
// that accepts bytes: no request message (at any depth) has a bytes field,
// and no string field looks like a payload.
func TestAPISurfaceSignsNoCallerBytes(t *testing.T) {
	svcs := signerpb.File_signer_proto.Services()
	if svcs.Len() != 1 {
		t.Fatalf("%d services, want 1", svcs.Len())
	}
	methods := svcs.Get(0).Methods()
	var names []string
	for i := 0; i < methods.Len(); i++ {
		m := methods.Get(i)
		names = append(names, string(m.Name()))
		if m.IsStreamingClient() {
			t.Errorf("method %s streams requests", m.Name())
		}
		checkNoBytes(t, string(m.Name()), m.Input(), map[protoreflect.FullName]bool{})
	}
	if got := strings.Join(names, ","); got != "MakeManifest,GetPublicKey" {
		t.Errorf("methods = %s; a new method needs a review of this test", got)
	}
}

func checkNoBytes(t *testing.T, path string, md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) {
	if seen[md.FullName()] {
		return
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		p := path + "." + string(f.Name())
		switch f.Kind() {
		case protoreflect.BytesKind:
			t.Errorf("request field %s is bytes", p)
		case protoreflect.MessageKind, protoreflect.GroupKind:
			if f.Message().FullName().Parent() != "hallmark.signer.v1" {
				t.Errorf("request field %s is a foreign message %s (could carry arbitrary data)", p, f.Message().FullName())
			}
			checkNoBytes(t, p, f.Message(), seen)
		case protoreflect.StringKind:
			for _, bad := range []string{"payload", "data", "statement", "message", "content", "body"} {
				if strings.Contains(string(f.Name()), bad) {
					t.Errorf("request field %s looks like content to sign", p)
				}
			}
		}
	}
}

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr bool
	}{
		{"unix:/run/hallmark/signer.sock", false},
		{"tcp:127.0.0.1:7000", false},
		{"tcp:[::1]:7000", false},
		{"tcp:0.0.0.0:7000", true},
		{"tcp:10.0.0.1:7000", true},
		{"http://x", true},
		{"/run/sock", true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, _, err := service.ParseAddress(tc.in)
			if (err != nil) != tc.wantErr {
				t.Errorf("ParseAddress(%q) err = %v, wantErr %v", tc.in, err, tc.wantErr)
			}
		})
	}
}
