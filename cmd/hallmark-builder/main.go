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
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hallmark-build/hallmark/builder/farm"
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
	maxCASBytes, err := parseBytes(*maxCAS)
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

	f, err := farm.New(farm.Config{
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
	if err := f.Serve(ctx, lis, mlis, *grace); err != nil {
		logger.Error("serving failed", "err", err)
		return 1
	}
	return 0
}

// parseBytes reads sizes like 1024, 512MiB, 20GiB, 1TB.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (examples: 0, 500MiB, 20GiB)", s)
	}
	return n * mult, nil
}
