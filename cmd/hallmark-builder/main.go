// Command hallmark-builder serves the Remote Execution API v2 (Capabilities,
// ContentAddressableStorage, ActionCache, ByteStream, Execution and
// Operations) on one gRPC port, runs actions on sandboxed in-process workers,
// and records every executed action in a hash-chained log.
//
//	hallmark-builder --listen=127.0.0.1:8980 --data=DIR
//
// Point Bazel at it with --remote_executor=grpc://127.0.0.1:8980.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/hallmark-build/hallmark/builder/farm"
	"github.com/hallmark-build/hallmark/builder/tenant"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("hallmark-builder", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8980", "gRPC listen address (host:port)")
	data := fs.String("data", "", "data directory for the CAS, ActionCache, execution log and worker files (required)")
	metricsListen := fs.String("metrics-listen", "127.0.0.1:9090", "Prometheus /metrics listen address; empty disables")
	workers := fs.Int("workers", runtime.NumCPU(), "actions executed at once")
	maxCAS := fs.String("max-cas-bytes", "0", "bound on the CAS size, e.g. 20GiB; 0 means unbounded")
	acWrites := fs.Bool("client-action-cache-writes", true, "let clients write the ActionCache (needed for --remote_cache with local execution)")
	defTimeout := fs.Duration("default-action-timeout", 15*time.Minute, "timeout of actions that set none")
	maxTimeout := fs.Duration("max-action-timeout", time.Hour, "largest timeout an action may ask for")
	grace := fs.Duration("shutdown-grace", 30*time.Second, "on SIGTERM, how long running actions may finish before they are cancelled")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	signerAddr := fs.String("signer", "", "signer address (unix:PATH or tcp:127.0.0.1:PORT) for hallmark-sign actions; empty: such actions fail")
	configPath := fs.String("config", "", "tenant configuration file (YAML, see docs/tenancy.md); makes the farm multi-tenant; SIGHUP reloads it")
	runscPath := fs.String("runsc", "", "runsc binary for tenants with sandbox: gvisor (default: runsc in PATH)")
	tlsCert := fs.String("tls-cert", "", "serve gRPC over TLS with this certificate (PEM); needs --tls-key")
	tlsKey := fs.String("tls-key", "", "private key (PEM) of --tls-cert")
	tlsClientCA := fs.String("tls-client-ca", "", "CA bundle (PEM) that signs client certificates; their identities authenticate tenants (client_cert_identities)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "hallmark-builder: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *data == "" {
		fmt.Fprintln(os.Stderr, "hallmark-builder: --data=DIR is required (where the CAS, ActionCache and execution log live)")
		return 2
	}
	maxCASBytes, err := tenant.ParseBytes(*maxCAS)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark-builder: --max-cas-bytes: %v\n", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "hallmark-builder: --log-level: %v\n", err)
		return 2
	}
	var h slog.Handler
	switch *logFormat {
	case "text":
		h = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	case "json":
		h = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	default:
		fmt.Fprintf(os.Stderr, "hallmark-builder: --log-format must be text or json, not %q\n", *logFormat)
		return 2
	}
	logger := slog.New(h)
	slog.SetDefault(logger)

	var tenants *tenant.Config
	if *configPath != "" {
		if tenants, err = tenant.Load(*configPath); err != nil {
			fmt.Fprintf(os.Stderr, "hallmark-builder: --config: %v\n", err)
			return 2
		}
	}
	var serverOpts []grpc.ServerOption
	if *tlsCert != "" || *tlsKey != "" || *tlsClientCA != "" {
		creds, err := tlsCredentials(*tlsCert, *tlsKey, *tlsClientCA)
		if err != nil {
			fmt.Fprintf(os.Stderr, "hallmark-builder: %v\n", err)
			return 2
		}
		serverOpts = append(serverOpts, grpc.Creds(creds))
	}
	f, err := farm.New(farm.Config{
		Tenants:                 tenants,
		RunscPath:               *runscPath,
		ServerOptions:           serverOpts,
		DataDir:                 *data,
		Workers:                 *workers,
		MaxCASBytes:             maxCASBytes,
		ClientActionCacheWrites: *acWrites,
		DefaultActionTimeout:    *defTimeout,
		MaxActionTimeout:        *maxTimeout,
		Logger:                  logger,
		Signer:                  *signerAddr,
	})
	if err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		logger.Error("cannot listen", "addr", *listen, "err", err)
		return 1
	}
	var mlis net.Listener
	if *metricsListen != "" {
		if mlis, err = net.Listen("tcp", *metricsListen); err != nil {
			logger.Error("cannot listen for metrics", "addr", *metricsListen, "err", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if tenants != nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
				}
				cfg, err := tenant.Load(*configPath)
				if err == nil {
					err = f.Reload(cfg)
				}
				if err != nil {
					logger.Error("SIGHUP: keeping the old tenant configuration", "config", *configPath, "err", err)
					continue
				}
				logger.Info("SIGHUP: tenant configuration reloaded", "config", *configPath, "tenants", len(cfg.Tenants))
			}
		}()
	}
	if err := f.Serve(ctx, lis, mlis, *grace); err != nil {
		logger.Error("serving failed", "err", err)
		return 1
	}
	return 0
}

// tlsCredentials builds server TLS; with a client CA, client certificates
// are verified when given (tenants may still use bearer tokens).
func tlsCredentials(certFile, keyFile, clientCA string) (credentials.TransportCredentials, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca: %s holds no PEM certificate", clientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return credentials.NewTLS(cfg), nil
}
