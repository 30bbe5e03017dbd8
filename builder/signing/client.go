// Package signing is the farm's side of hallmark-sign actions: a client to
// the signer process (Client) and the handler that turns an action whose
// platform carries the "hallmark-sign" property into a signed manifest
// (Handler). The handler never runs a command: it reads the action's input
// root, asks the signer for a manifest of the artifact inputs, and returns the
// DSSE envelope as the action's one output file.
package signing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/signer/signerpb"
)

// ErrUnavailable is the category of errors returned when the signer cannot
// be reached; *UnavailableError says where and why.
var ErrUnavailable = errors.New("signer unavailable")

// UnavailableError reports a signer that did not answer.
type UnavailableError struct {
	Addr string
	Err  error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("the signer at %s is not reachable (is hallmark-signer running and listening there?): %v", e.Addr, e.Err)
}

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap returns the underlying error.
func (e *UnavailableError) Unwrap() error { return e.Err }

var _ error = (*UnavailableError)(nil)

// Client is a connection to the signer that is opened on first use, and
// re-opened when the signer went away (for example after a restart). A
// signer that is down makes calls fail within the connect timeout; a call
// never waits longer than the call timeout. It is safe for concurrent use.
type Client struct {
	addr           string
	target         string
	connectTimeout time.Duration
	callTimeout    time.Duration

	mu sync.Mutex
	cc *grpc.ClientConn
}

// Option configures a Client.
type Option func(*Client) error

// WithConnectTimeout bounds how long a call waits for a connection to the
// signer before it fails. Default 5s.
func WithConnectTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("signing: connect timeout %v must be positive", d)
		}
		c.connectTimeout = d
		return nil
	}
}

// WithCallTimeout bounds one MakeManifest call (tracing a large graph takes
// time). Default 2m.
func WithCallTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("signing: call timeout %v must be positive", d)
		}
		c.callTimeout = d
		return nil
	}
}

// NewClient returns a client for the signer at addr: "unix:PATH" or
// "tcp:HOST:PORT" with a loopback HOST. It does not connect yet.
func NewClient(addr string, opts ...Option) (*Client, error) {
	target, err := dialTarget(addr)
	if err != nil {
		return nil, err
	}
	c := &Client{addr: addr, target: target, connectTimeout: 5 * time.Second, callTimeout: 2 * time.Minute}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Addr returns the signer address the client was made for.
func (c *Client) Addr() string { return c.addr }

func dialTarget(addr string) (string, error) {
	scheme, rest, ok := strings.Cut(addr, ":")
	if !ok || rest == "" {
		return "", fmt.Errorf("signing: signer address %q: want unix:PATH or tcp:127.0.0.1:PORT", addr)
	}
	switch scheme {
	case "unix":
		if strings.HasPrefix(rest, "/") {
			return "unix://" + rest, nil
		}
		return "unix:" + rest, nil
	case "tcp":
		host, _, err := net.SplitHostPort(rest)
		if err != nil {
			return "", fmt.Errorf("signing: signer address %q: %v", addr, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return "", fmt.Errorf("signing: signer address %q: the signer must be on this machine (a loopback host)", addr)
		}
		return "passthrough:///" + rest, nil
	}
	return "", fmt.Errorf("signing: signer address %q: unknown scheme %q, want unix or tcp", addr, scheme)
}

// conn returns the current connection, dialling one if there is none.
func (c *Client) conn() (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cc != nil {
		return c.cc, nil
	}
	cc, err := grpc.NewClient(c.target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(80<<20)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: c.connectTimeout,
		}))
	if err != nil {
		return nil, &UnavailableError{Addr: c.addr, Err: err}
	}
	c.cc = cc
	return cc, nil
}

// drop closes cc if it is still the current connection, so the next call
// dials afresh instead of waiting out the old connection's backoff.
func (c *Client) drop(cc *grpc.ClientConn) {
	c.mu.Lock()
	if c.cc == cc {
		c.cc = nil
	}
	c.mu.Unlock()
	cc.Close()
}

// ready waits until cc is connected, failing after the connect timeout or
// as soon as a connection attempt fails.
func (c *Client) ready(ctx context.Context, cc *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	cc.Connect()
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return fmt.Errorf("connection %s", strings.ToLower(s.String()))
		}
		if !cc.WaitForStateChange(ctx, s) {
			if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
				return fmt.Errorf("no connection within %v", c.connectTimeout)
			}
			return ctx.Err()
		}
	}
}

// MakeManifest asks the signer for a manifest. Errors are the signer's own
// status errors (FailedPrecondition for a refusal, InvalidArgument for a bad
// request), or an *UnavailableError when the signer could not be reached
// even after one fresh connection.
func (c *Client) MakeManifest(ctx context.Context, req *signerpb.MakeManifestRequest) (*signerpb.MakeManifestResponse, error) {
	var last error
	for attempt := 0; attempt < 2; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cc, err := c.conn()
		if err != nil {
			return nil, err
		}
		if err := c.ready(ctx, cc); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			c.drop(cc)
			last = err
			continue
		}
		callCtx, cancel := context.WithTimeout(ctx, c.callTimeout)
		resp, err := signerpb.NewSignerClient(cc).MakeManifest(callCtx, req)
		timedOut := callCtx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return resp, nil
		}
		if timedOut {
			return nil, &UnavailableError{Addr: c.addr, Err: fmt.Errorf("no answer within %v", c.callTimeout)}
		}
		if status.Code(err) != codes.Unavailable {
			return nil, err
		}
		// The signer went away under an established connection (a restart):
		// reconnect once.
		c.drop(cc)
		last = err
	}
	return nil, &UnavailableError{Addr: c.addr, Err: last}
}

// Close closes the connection, if any. The client can still be used; it
// connects again.
func (c *Client) Close() error {
	c.mu.Lock()
	cc := c.cc
	c.cc = nil
	c.mu.Unlock()
	if cc != nil {
		return cc.Close()
	}
	return nil
}
