package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hallmark-build/hallmark/gate"
	"github.com/hallmark-build/hallmark/gate/audit"
	"github.com/hallmark-build/hallmark/gate/policy"
	"github.com/hallmark-build/hallmark/gate/trust"
	"github.com/hallmark-build/hallmark/gate/verify"
	"github.com/hallmark-build/hallmark/gate/webhook"
	"github.com/hallmark-build/hallmark/signer/dsse"
)

func init() {
	register(&command{name: "gate check", summary: "decide whether an image may run as an identity; prints every reason, non-zero on deny", run: runGateCheck})
	register(&command{name: "gate recheck", summary: "re-evaluate admitted workloads in the audit log against the current policy and keys", run: runGateRecheck})
	register(&command{name: "gate serve", summary: "run the Kubernetes validating admission webhook over TLS", run: runGateServe})
}

// trustFlags are the flags that say which keys to trust.
type trustFlags struct {
	key, tufRoot, tufURL, tufCache string
}

func (t *trustFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.key, "key", "", "trust this signer public key (PEM PKIX) instead of TUF")
	fs.StringVar(&t.tufRoot, "tuf-root", "", "pinned TUF root.json")
	fs.StringVar(&t.tufURL, "tuf-url", "", "TUF repository URL")
	fs.StringVar(&t.tufCache, "tuf-cache", "", "TUF metadata cache directory (default: user cache dir/hallmark/tuf)")
}

func (t *trustFlags) source() (verify.TrustSource, error) {
	switch {
	case t.key != "" && (t.tufRoot != "" || t.tufURL != ""):
		return nil, errors.New("give either --key or --tuf-root with --tuf-url, not both")
	case t.key != "":
		b, err := os.ReadFile(t.key)
		if err != nil {
			return nil, err
		}
		v, err := verify.KeyFromPEM(b)
		if err != nil {
			return nil, fmt.Errorf("--key %s: %w", t.key, err)
		}
		return verify.StaticTrust{Verifiers: []dsse.Verifier{v}}, nil
	case t.tufRoot != "" && t.tufURL != "":
		root, err := os.ReadFile(t.tufRoot)
		if err != nil {
			return nil, err
		}
		cache := t.tufCache
		if cache == "" {
			d, err := os.UserCacheDir()
			if err != nil {
				return nil, err
			}
			cache = filepath.Join(d, "hallmark", "tuf", strings.NewReplacer("/", "_", ":", "_").Replace(t.tufURL))
		}
		return trust.New(root, t.tufURL, cache)
	default:
		return nil, errors.New("give --key, or --tuf-root and --tuf-url")
	}
}

func loadPolicy(path string) (*policy.Policy, error) {
	if path == "" {
		return nil, errors.New("--policy is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return policy.Parse(b)
}

func runGateCheck(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("gate check", flag.ContinueOnError)
	var tf trustFlags
	tf.register(fs)
	polPath := fs.String("policy", "", "policy YAML (required)")
	identity := fs.String("identity", "", "service identity the image will run as (required)")
	justification := fs.String("justification", "", "break-glass justification")
	auditPath := fs.String("audit", "", "append the decision to this audit log")
	asJSON := fs.Bool("json", false, "print the decision as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hallmark gate check --policy=P --identity=ID (--key=PUB | --tuf-root=ROOT --tuf-url=URL) REF")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *identity == "" || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	g, closeFn, err := buildGate(tf, *polPath, *auditPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark gate check: %v\n", err)
		return 2
	}
	defer closeFn()
	d := g.Check(ctx, gate.Request{Identity: *identity, Image: fs.Arg(0), Justification: *justification, Workload: "cli", User: os.Getenv("USER")})
	printDecision(d, *asJSON)
	if !d.Allow {
		return 1
	}
	return 0
}

func buildGate(tf trustFlags, polPath, auditPath string, opts ...gate.Option) (*gate.Gate, func(), error) {
	pol, err := loadPolicy(polPath)
	if err != nil {
		return nil, nil, err
	}
	ts, err := tf.source()
	if err != nil {
		return nil, nil, err
	}
	v, err := verify.New(ts, verify.WithDefaultKeychain())
	if err != nil {
		return nil, nil, err
	}
	closeFn := func() {}
	if auditPath != "" {
		l, err := audit.Open(auditPath)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, gate.WithAudit(l))
		closeFn = func() { l.Close() }
	}
	g, err := gate.New(v, pol, opts...)
	return g, closeFn, err
}

func printDecision(d policy.Decision, asJSON bool) {
	if asJSON {
		b, _ := json.MarshalIndent(d, "", "  ")
		fmt.Println(string(b))
		return
	}
	verdict := "DENY"
	if d.Allow {
		verdict = "ALLOW"
	}
	fmt.Printf("%s %s as %s (mode %s)\n", verdict, d.Image, d.Identity, d.Mode)
	for _, r := range d.Violations {
		fmt.Printf("  violation %s\n", r)
	}
	for _, r := range d.Notes {
		fmt.Printf("  note %s\n", r)
	}
	if d.Allow && len(d.Violations) == 0 {
		fmt.Println("  every requirement of the policy is satisfied")
	}
}

func runGateRecheck(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("gate recheck", flag.ContinueOnError)
	var tf trustFlags
	tf.register(fs)
	polPath := fs.String("policy", "", "policy YAML (required)")
	auditPath := fs.String("audit", "", "audit log of admissions (required); findings are appended to it")
	if err := fs.Parse(args); err != nil || *auditPath == "" {
		fs.Usage()
		return 2
	}
	g, closeFn, err := buildGate(tf, *polPath, *auditPath, gate.WithCacheTTL(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark gate recheck: %v\n", err)
		return 2
	}
	defer closeFn()
	fins, err := g.Recheck(ctx, *auditPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark gate recheck: %v\n", err)
		return 2
	}
	for _, f := range fins {
		fmt.Printf("NO LONGER COMPLIANT %s %s as %s (admitted %s)\n", f.Workload, f.Image, f.Identity, f.Admitted.Format(time.RFC3339))
		for _, r := range f.Decision.Violations {
			fmt.Printf("  violation %s\n", r)
		}
	}
	if len(fins) > 0 {
		return 1
	}
	fmt.Println("every admitted workload still complies")
	return 0
}

func runGateServe(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("gate serve", flag.ContinueOnError)
	var tf trustFlags
	tf.register(fs)
	polPath := fs.String("policy", "", "policy YAML (required); re-read on every recheck")
	auditPath := fs.String("audit", "", "audit log (required)")
	listen := fs.String("listen", ":8443", "HTTPS listen address")
	cert := fs.String("tls-cert", "", "TLS certificate PEM (required)")
	key := fs.String("tls-key", "", "TLS private key PEM (required)")
	timeout := fs.Duration("timeout", 8*time.Second, "answer within this time (keep under the webhook's timeoutSeconds)")
	recheck := fs.Duration("recheck-interval", 10*time.Minute, "re-evaluate admitted workloads this often (0: never)")
	if err := fs.Parse(args); err != nil || *auditPath == "" || *cert == "" || *key == "" {
		fs.Usage()
		return 2
	}
	g, closeFn, err := buildGate(tf, *polPath, *auditPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark gate serve: %v\n", err)
		return 2
	}
	defer closeFn()
	if *recheck > 0 {
		go func() {
			t := time.NewTicker(*recheck)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				if p, err := loadPolicy(*polPath); err == nil {
					g.SetPolicy(p)
				} else {
					fmt.Fprintf(os.Stderr, "hallmark gate serve: policy reload: %v (keeping the previous policy)\n", err)
				}
				fins, err := g.Recheck(ctx, *auditPath)
				if err != nil {
					fmt.Fprintf(os.Stderr, "hallmark gate serve: recheck: %v\n", err)
				}
				for _, f := range fins {
					fmt.Fprintf(os.Stderr, "hallmark gate serve: NO LONGER COMPLIANT %s %s as %s: %v\n", f.Workload, f.Image, f.Identity, f.Decision.Violations)
				}
			}
		}()
	}
	mux := http.NewServeMux()
	mux.Handle("/validate", webhook.New(g, webhook.WithTimeout(*timeout)))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	return serveHTTP(ctx, *listen, mux, *cert, *key)
}

// serveHTTP serves h until ctx ends; TLS when cert and key are given.
func serveHTTP(ctx context.Context, addr string, h http.Handler, cert, key string) int {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Fprintf(os.Stderr, "hallmark: serving on %s\n", l.Addr())
	if cert != "" {
		err = srv.ServeTLS(l, cert, key)
	} else {
		err = srv.Serve(l)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "hallmark: %v\n", err)
		return 1
	}
	return 0
}
