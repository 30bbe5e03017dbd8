package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/signer/dsse"
	"github.com/hallmark-build/hallmark/signer/service"
	"github.com/hallmark-build/hallmark/signer/signerpb"
)

func init() {
	register(&command{name: "sign", summary: "ask the signer for a signed manifest of built artifacts", run: runSign})
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func runSign(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("hallmark sign", flag.ContinueOnError)
	signer := fs.String("signer", "", "signer address, unix:PATH or tcp:127.0.0.1:PORT; required")
	commit := fs.String("commit", "", "commit the sources come from (default: HEAD of the working directory's git repository)")
	repository := fs.String("repository", "", "repository the sources come from (default: the git remote origin URL, if any)")
	tenant := fs.String("tenant", envOr("HALLMARK_TENANT", "default"), "tenant that built the artifacts (default $HALLMARK_TENANT or \"default\")")
	invocation := fs.String("invocation", "", "Bazel invocation id the artifacts were built in (optional)")
	out := fs.String("out", "", "envelope file (default: FIRST_ARTIFACT.intoto.jsonl)")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the signer")
	var targets stringList
	fs.Var(&targets, "target", "requested Bazel target, recorded as a claim (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *signer == "" || fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: hallmark sign --signer=unix:PATH [--commit=SHA] [--invocation=ID] [--target=LABEL]... [--out=FILE] ARTIFACT...")
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "hallmark sign: "+format+"\n", a...)
		return 1
	}
	if *commit == "" {
		c, err := git(ctx, "rev-parse", "--verify", "HEAD^{commit}")
		if err != nil {
			return fail("no --commit and no git HEAD in the working directory: %v", err)
		}
		*commit = c
	}
	if *repository == "" {
		*repository, _ = git(ctx, "config", "--get", "remote.origin.url")
	}
	req := &signerpb.MakeManifestRequest{
		Tenant: *tenant, Commit: *commit, Repository: *repository, InvocationId: *invocation, Targets: targets,
	}
	for _, path := range fs.Args() {
		d, err := fileDigest(path)
		if err != nil {
			return fail("%v", err)
		}
		req.Artifacts = append(req.Artifacts, &signerpb.Artifact{Name: filepath.ToSlash(filepath.Clean(path)), Sha256: d.Hash, SizeBytes: d.Size})
	}
	dest := *out
	if dest == "" {
		dest = fs.Arg(0) + ".intoto.jsonl"
	}
	client, cc, err := service.Dial(*signer)
	if err != nil {
		return fail("%v", err)
	}
	defer cc.Close()
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, err := client.MakeManifest(cctx, req)
	if err != nil {
		st := status.Convert(err)
		return fail("the signer refused (%s): %s", st.Code(), st.Message())
	}
	// Check what we got before writing it: a well-formed envelope.
	if _, err := dsse.Parse(resp.GetEnvelope()); err != nil {
		return fail("the signer returned a malformed envelope: %v", err)
	}
	if err := writeAtomic(dest, append(resp.GetEnvelope(), '\n')); err != nil {
		return fail("%v", err)
	}
	fmt.Printf("wrote %s (key %s, %d artifacts)\n", dest, resp.GetKeyId(), len(req.Artifacts))
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func git(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Stderr = nil
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

func fileDigest(path string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return digest.Digest{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return digest.Digest{}, err
	}
	if !st.Mode().IsRegular() {
		return digest.Digest{}, fmt.Errorf("%s is not a regular file", path)
	}
	d, err := digest.OfReader(f)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("reading %s: %w", path, err)
	}
	return d, nil
}

// writeAtomic writes data to a temporary file next to path and renames it
// into place, so a failure leaves no partial file behind.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
