package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hallmark-build/hallmark/signer/publish"
)

func init() {
	register(&command{name: "tuf init", summary: "create a TUF repository (root, targets, snapshot, timestamp) in --repo", run: runTUFInit})
	register(&command{name: "tuf add-key", summary: "publish a signer public key (and builder ids) as TUF targets", run: runTUFAddKey})
	register(&command{name: "tuf revoke-key", summary: "remove a signer public key from the TUF targets", run: runTUFRevokeKey})
	register(&command{name: "tuf refresh", summary: "re-sign snapshot and timestamp with fresh expiries (run before they expire)", run: runTUFRefresh})
	register(&command{name: "tuf serve", summary: "serve the TUF repository over HTTP", run: runTUFServe})
}

func runTUFInit(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("tuf init", flag.ContinueOnError)
	repo := fs.String("repo", "", "repository directory (required)")
	keys := fs.Int("root-keys", 1, "number of root keys")
	threshold := fs.Int("root-threshold", 1, "root signatures required")
	tsExp := fs.Duration("timestamp-expiry", publish.DefaultExpiry["timestamp"], "timestamp expiry")
	snapExp := fs.Duration("snapshot-expiry", publish.DefaultExpiry["snapshot"], "snapshot expiry")
	tgtExp := fs.Duration("targets-expiry", publish.DefaultExpiry["targets"], "targets expiry")
	rootExp := fs.Duration("root-expiry", publish.DefaultExpiry["root"], "root expiry")
	builders := fs.String("builders", "", "comma-separated trusted builder ids")
	if err := fs.Parse(args); err != nil || *repo == "" {
		fs.Usage()
		return 2
	}
	r, err := publish.InitTUF(*repo, publish.TUFInitOptions{RootKeys: *keys, RootThreshold: *threshold, Expiry: map[string]time.Duration{
		"timestamp": *tsExp, "snapshot": *snapExp, "targets": *tgtExp, "root": *rootExp,
	}}, time.Now())
	if err == nil && *builders != "" {
		err = r.SetBuilders(strings.Split(*builders, ","), time.Now())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark tuf init: %v\n", err)
		return 1
	}
	fmt.Printf("initialised %s; pin %s/1.root.json in gates (--tuf-root)\n", *repo, r.Dir())
	return 0
}

func runTUFAddKey(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("tuf add-key", flag.ContinueOnError)
	repo := fs.String("repo", "", "repository directory (required)")
	name := fs.String("name", "", "key name, e.g. prod-signer (required)")
	key := fs.String("key", "", "signer public key, PEM PKIX (required)")
	builders := fs.String("builders", "", "if set, replace the trusted builder ids (comma-separated)")
	if err := fs.Parse(args); err != nil || *repo == "" || *name == "" || *key == "" {
		fs.Usage()
		return 2
	}
	r, err := publish.OpenTUF(*repo)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark tuf add-key: %v\n", err)
		return 1
	}
	pem, err := os.ReadFile(*key)
	if err == nil {
		err = r.AddSignerKey(*name, pem, time.Now())
	}
	if err == nil && *builders != "" {
		err = r.SetBuilders(strings.Split(*builders, ","), time.Now())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark tuf add-key: %v\n", err)
		return 1
	}
	fmt.Printf("signer keys: %s\n", strings.Join(r.SignerKeys(), ", "))
	return 0
}

func runTUFRevokeKey(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("tuf revoke-key", flag.ContinueOnError)
	repo := fs.String("repo", "", "repository directory (required)")
	name := fs.String("name", "", "key name (required)")
	if err := fs.Parse(args); err != nil || *repo == "" || *name == "" {
		fs.Usage()
		return 2
	}
	r, err := publish.OpenTUF(*repo)
	if err == nil {
		err = r.RevokeSignerKey(*name, time.Now())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark tuf revoke-key: %v\n", err)
		return 1
	}
	fmt.Printf("revoked %s; signer keys: %s\n", *name, strings.Join(r.SignerKeys(), ", "))
	return 0
}

func runTUFRefresh(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("tuf refresh", flag.ContinueOnError)
	repo := fs.String("repo", "", "repository directory (required)")
	if err := fs.Parse(args); err != nil || *repo == "" {
		fs.Usage()
		return 2
	}
	r, err := publish.OpenTUF(*repo)
	if err == nil {
		err = r.Refresh(time.Now())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark tuf refresh: %v\n", err)
		return 1
	}
	return 0
}

func runTUFServe(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("tuf serve", flag.ContinueOnError)
	repo := fs.String("repo", "", "repository directory (required)")
	listen := fs.String("listen", "127.0.0.1:8700", "HTTP listen address")
	if err := fs.Parse(args); err != nil || *repo == "" {
		fs.Usage()
		return 2
	}
	r, err := publish.OpenTUF(*repo)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark tuf serve: %v\n", err)
		return 1
	}
	return serveHTTP(ctx, *listen, r.Handler(), "", "")
}
