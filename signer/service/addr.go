package service

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hallmark-build/hallmark/signer/signerpb"
)

// ParseAddress splits a signer address: "unix:PATH" or "tcp:HOST:PORT" where
// HOST is a loopback address. The signer never listens beyond the machine.
func ParseAddress(addr string) (network, address string, err error) {
	scheme, rest, ok := strings.Cut(addr, ":")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("signer address %q: want unix:PATH or tcp:127.0.0.1:PORT", addr)
	}
	switch scheme {
	case "unix":
		return "unix", rest, nil
	case "tcp":
		host, _, err := net.SplitHostPort(rest)
		if err != nil {
			return "", "", fmt.Errorf("signer address %q: %v", addr, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return "", "", fmt.Errorf("signer address %q: TCP host must be a loopback address", addr)
		}
		return "tcp", rest, nil
	}
	return "", "", fmt.Errorf("signer address %q: unknown scheme %q, want unix or tcp", addr, scheme)
}

// Listen opens the signer's listener. A Unix socket gets mode 0660 so that
// only the signer's user and group can connect; a stale socket file is
// replaced.
func Listen(addr string) (net.Listener, error) {
	network, address, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if st, err := os.Lstat(address); err == nil {
			if st.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("listen %s: file exists and is not a socket", address)
			}
			if err := os.Remove(address); err != nil {
				return nil, err
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	lis, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if err := os.Chmod(address, 0o660); err != nil {
			lis.Close()
			return nil, err
		}
	}
	return lis, nil
}

// Dial connects to a signer at addr (see ParseAddress).
func Dial(addr string) (signerpb.SignerClient, *grpc.ClientConn, error) {
	network, address, err := ParseAddress(addr)
	if err != nil {
		return nil, nil, err
	}
	target := "passthrough:///" + address
	if network == "unix" {
		target = "unix://" + address
		if !strings.HasPrefix(address, "/") {
			target = "unix:" + address
		}
	}
	cc, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(80<<20)))
	if err != nil {
		return nil, nil, fmt.Errorf("signer %s: %w", addr, err)
	}
	return signerpb.NewSignerClient(cc), cc, nil
}

// Register adds the server to a gRPC server.
func Register(g *grpc.Server, s *Server) { signerpb.RegisterSignerServer(g, s) }
