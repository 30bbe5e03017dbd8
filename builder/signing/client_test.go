package signing_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/signing"
	"github.com/hallmark-build/hallmark/signer/signerpb"
)

type fakeSigner struct {
	signerpb.UnimplementedSignerServer
	err error
}

func (f *fakeSigner) MakeManifest(_ context.Context, req *signerpb.MakeManifestRequest) (*signerpb.MakeManifestResponse, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &signerpb.MakeManifestResponse{Envelope: []byte(`{"for":"` + req.GetTenant() + `"}`), KeyId: "k"}, nil
}

// serve starts a signer on a Unix socket and returns a stop function.
func serve(t *testing.T, sock string, s signerpb.SignerServer) func() {
	t.Helper()
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	signerpb.RegisterSignerServer(g, s)
	go g.Serve(lis)
	stop := func() { g.Stop() }
	t.Cleanup(stop)
	return stop
}

func TestNewClient(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"unix:/run/signer.sock", true},
		{"unix:rel.sock", true},
		{"tcp:127.0.0.1:9000", true},
		{"tcp:[::1]:9000", true},
		{"tcp:10.0.0.1:9000", false},
		{"tcp:127.0.0.1", false},
		{"/run/signer.sock", false},
		{"unix:", false},
		{"http:x", false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			_, err := signing.NewClient(tc.addr)
			if (err == nil) != tc.ok {
				t.Errorf("NewClient(%q) error = %v, want ok=%v", tc.addr, err, tc.ok)
			}
		})
	}
	if _, err := signing.NewClient("unix:/x", signing.WithConnectTimeout(0)); err == nil {
		t.Error("WithConnectTimeout(0) accepted")
	}
}

func TestMakeManifest(t *testing.T) {
	req := &signerpb.MakeManifestRequest{Tenant: "t1"}
	t.Run("SignerDownFailsFast", func(t *testing.T) {
		c, err := signing.NewClient("unix:"+filepath.Join(t.TempDir(), "absent.sock"), signing.WithConnectTimeout(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		_, err = c.MakeManifest(context.Background(), req)
		if !errors.Is(err, signing.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 7*time.Second {
			t.Errorf("failing took %v", d)
		}
	})
	t.Run("ReconnectsAfterRestart", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "s.sock")
		stop := serve(t, sock, &fakeSigner{})
		c, err := signing.NewClient("unix:"+sock, signing.WithConnectTimeout(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if resp, err := c.MakeManifest(context.Background(), req); err != nil || string(resp.GetEnvelope()) != `{"for":"t1"}` {
			t.Fatalf("first call: %v, %v", resp, err)
		}
		stop()
		if _, err := c.MakeManifest(context.Background(), req); !errors.Is(err, signing.ErrUnavailable) {
			t.Fatalf("call with the signer stopped: %v, want ErrUnavailable", err)
		}
		serve(t, sock, &fakeSigner{})
		if _, err := c.MakeManifest(context.Background(), req); err != nil {
			t.Fatalf("call after the restart: %v", err)
		}
	})
	t.Run("RefusalKeepsItsCode", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "s.sock")
		serve(t, sock, &fakeSigner{err: status.Error(codes.FailedPrecondition, "refused: x")})
		c, _ := signing.NewClient("unix:" + sock)
		defer c.Close()
		_, err := c.MakeManifest(context.Background(), req)
		if status.Code(err) != codes.FailedPrecondition || errors.Is(err, signing.ErrUnavailable) {
			t.Errorf("err = %v, want the signer's FailedPrecondition", err)
		}
	})
}
