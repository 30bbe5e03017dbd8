// Command hallmark-signer is the signer process: it holds the only copy of
// the signing key, reads the farm's records read-only, and serves the narrow
// signer API (signer/signerpb) on a Unix socket or loopback TCP.
//
//	hallmark-signer --key=KEY --records=BUILDER_DATA_DIR --listen=unix:PATH
//	    [--config=TENANTS.yaml] [--source-repository=GITDIR --protected-branch=main]
//	    [--allowlist=FILE] [--require-allowlist] [--farm-id=ID] [--builder-id=URI]
//
// It refuses to start if the key file is readable or writable by group or
// others. SIGTERM or SIGINT stop it cleanly: in-flight requests finish, new
// ones are refused.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/hallmark-build/hallmark/signer/key"
	"github.com/hallmark-build/hallmark/signer/service"
)

// config is the parsed command line.
type config struct {
	keyPath          string
	records          string
	listen           string
	tenants          string
	sourceRepository string
	// sourceRepositoryURI names the repository in manifests (default: the
	// file:// URL of sourceRepository).
	sourceRepositoryURI string
	protectedBranch     string
	allowlist           string
	requireAllowlist    bool
	farmID              string
	builderID           string
	untenantedAs        string
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(os.Args[1:], log); err != nil {
		log.Error("hallmark-signer stopped", "err", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("hallmark-signer", flag.ContinueOnError)
	fs.StringVar(&c.keyPath, "key", "", "private key file (PEM PKCS#8, mode 0600 or stricter); required")
	fs.StringVar(&c.records, "records", "", "the builder's data directory, read-only; required")
	fs.StringVar(&c.listen, "listen", "", "unix:PATH or tcp:127.0.0.1:PORT; required")
	fs.StringVar(&c.tenants, "config", "", "tenant configuration (TENANTS.yaml)")
	fs.StringVar(&c.sourceRepository, "source-repository", "", "git repository (bare or working copy) the sources are checked against")
	fs.StringVar(&c.sourceRepositoryURI, "source-repository-uri", "", "the repository's canonical name recorded in manifests, e.g. https://git.example.com/mono (default: file:// URL of --source-repository)")
	fs.StringVar(&c.protectedBranch, "protected-branch", "main", "a commit must be reachable from this branch of --source-repository")
	fs.StringVar(&c.allowlist, "allowlist", "", "third-party repositories allowlist (pinned tree digests)")
	fs.BoolVar(&c.requireAllowlist, "require-allowlist", false, "refuse third-party repositories that are not on the allowlist")
	fs.StringVar(&c.farmID, "farm-id", "local", "farm id recorded in manifests")
	fs.StringVar(&c.builderID, "builder-id", "", "runDetails.builder.id (default https://hallmark.build/farm/FARM-ID)")
	fs.StringVar(&c.untenantedAs, "untenanted-as", "", "treat farm records without a tenant (a farm without tenant configuration) as this tenant's; hallmark-builder names them \"default\"")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() != 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, req := range []struct{ name, v string }{{"--key", c.keyPath}, {"--records", c.records}, {"--listen", c.listen}} {
		if req.v == "" {
			return c, fmt.Errorf("%s is required", req.name)
		}
	}
	if c.requireAllowlist && c.allowlist == "" {
		return c, errors.New("--require-allowlist needs --allowlist")
	}
	return c, nil
}

func run(args []string, log *slog.Logger) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	signer, err := key.LoadFile(c.keyPath)
	if err != nil {
		return err
	}
	tracer, closeTracer, err := newTracer(c, log)
	if err != nil {
		return err
	}
	defer closeTracer()
	opts := []service.Option{service.WithFarmID(c.farmID), service.WithLogger(log)}
	if c.builderID != "" {
		opts = append(opts, service.WithBuilderID(c.builderID))
	}
	srv, err := service.New(signer, tracer, opts...)
	if err != nil {
		return err
	}
	lis, err := service.Listen(c.listen)
	if err != nil {
		return err
	}
	g := grpc.NewServer(grpc.MaxRecvMsgSize(4 << 20))
	service.Register(g, srv)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	log.Info("hallmark-signer serving", "listen", c.listen, "key", signer.KeyID(), "records", c.records)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("hallmark-signer stopping")
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		g.Stop()
	}
	if network, path, _ := service.ParseAddress(c.listen); network == "unix" {
		os.Remove(path)
	}
	log.Info("hallmark-signer stopped")
	return nil
}
