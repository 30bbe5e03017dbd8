package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/hallmark-build/hallmark/signer/dsse"
	"github.com/hallmark-build/hallmark/signer/provenance"
)

func init() {
	register(&command{name: "verify", summary: "verify a manifest's signature and subject digest and summarise it", run: runVerify})
}

func runVerify(_ context.Context, args []string) int {
	fs := flag.NewFlagSet("hallmark verify", flag.ContinueOnError)
	pubPath := fs.String("key", "", "signer public key (PEM PKIX, signer.pub); required")
	envPath := fs.String("envelope", "", "DSSE envelope file; required")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *pubPath == "" || *envPath == "" || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: hallmark verify --key=PUB --envelope=FILE ARTIFACT")
		return 2
	}
	st, name, err := verifyManifest(*pubPath, *envPath, fs.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark verify: FAILED: %v\n", err)
		return 1
	}
	printSummary(os.Stdout, st, name, fs.Arg(0))
	return 0
}

// verifyManifest checks the envelope's signature with the public key, parses
// and validates the statement and checks the artifact is one of its subjects.
func verifyManifest(pubPath, envPath, artifact string) (*provenance.Statement, string, error) {
	pemData, err := os.ReadFile(pubPath)
	if err != nil {
		return nil, "", err
	}
	pub, err := dsse.ParsePublicKeyPEM(pemData)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", pubPath, err)
	}
	v, err := dsse.NewVerifier(pub)
	if err != nil {
		return nil, "", err
	}
	envData, err := readBounded(envPath, dsse.MaxEnvelopeSize)
	if err != nil {
		return nil, "", err
	}
	env, err := dsse.Parse(envData)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", envPath, err)
	}
	payload, err := env.Verify(dsse.PayloadTypeInToto, v)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", envPath, err)
	}
	st, err := provenance.Parse(payload)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", envPath, err)
	}
	d, err := fileDigest(artifact)
	if err != nil {
		return nil, "", err
	}
	name, ok := st.SubjectBySHA256(d.Hash)
	if !ok {
		return nil, "", fmt.Errorf("%s (sha256 %s) is not a subject of the manifest", artifact, d.Hash)
	}
	return st, name, nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

func printSummary(w io.Writer, st *provenance.Statement, subject, artifact string) {
	bd := st.Predicate.BuildDefinition
	rd := st.Predicate.RunDetails
	sum, _ := st.Summary() // validated by Parse
	acts, _ := st.Actions()
	fmt.Fprintf(w, "VERIFIED %s (subject %q)\n", artifact, subject)
	src := bd.ExternalParameters.Source
	if src.Repository != "" {
		fmt.Fprintf(w, "  source:     %s @ %s\n", src.Repository, src.Commit)
	} else {
		fmt.Fprintf(w, "  commit:     %s\n", src.Commit)
	}
	fmt.Fprintf(w, "  builder:    %s (farm %s, tenant %s)\n", rd.Builder.ID, bd.InternalParameters.FarmID, bd.InternalParameters.Tenant)
	if len(bd.ExternalParameters.Targets) > 0 {
		fmt.Fprintf(w, "  targets:    %s\n", strings.Join(bd.ExternalParameters.Targets, " "))
	}
	if rd.Metadata.InvocationID != "" {
		fmt.Fprintf(w, "  invocation: %s\n", rd.Metadata.InvocationID)
	}
	if rd.Metadata.StartedOn != nil && rd.Metadata.FinishedOn != nil {
		fmt.Fprintf(w, "  built:      %s to %s\n", rd.Metadata.StartedOn.Format("2006-01-02T15:04:05Z"), rd.Metadata.FinishedOn.Format("2006-01-02T15:04:05Z"))
	}
	fmt.Fprintf(w, "  actions:    %d\n", len(acts))
	c := sum.Counts
	fmt.Fprintf(w, "  inputs:     %d source, %d generated, %d third-party, %d client-written\n", c.Source, c.Generated, c.ThirdParty, c.ClientWritten)
	if n := len(bd.ResolvedDependencies) - 1; n > 0 {
		fmt.Fprintf(w, "  third-party repositories: %d", n)
		if len(sum.UnreviewedThirdParty) > 0 {
			fmt.Fprintf(w, " (%d not on an allowlist: %s)", len(sum.UnreviewedThirdParty), strings.Join(sum.UnreviewedThirdParty, ", "))
		}
		fmt.Fprintln(w)
	}
	if len(sum.ClientWritten) > 0 {
		fmt.Fprintln(w, "  client-written inputs:")
		for _, f := range sum.ClientWritten {
			fmt.Fprintf(w, "    %s  %s", f.Path, f.Digest)
			if len(f.Content) > 0 && utf8.Valid(f.Content) && len(f.Content) <= 120 {
				fmt.Fprintf(w, "  %q", f.Content)
			}
			fmt.Fprintln(w)
		}
	}
}
