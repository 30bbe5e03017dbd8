package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/hallmark-build/hallmark/signer/publish"
)

func init() {
	register(&command{name: "push", summary: "push an OCI image layout and attach its signed manifest (referrer + cosign .att)", run: runPush})
}

func runPush(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	envPath := fs.String("envelope", "", "DSSE envelope whose subjects include the image manifest digest (required)")
	layoutDir := fs.String("oci-layout", "", "OCI image layout directory holding exactly one image or index (required)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: hallmark push --envelope=ENV --oci-layout=DIR REF")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *envPath == "" || *layoutDir == "" || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	env, err := os.ReadFile(*envPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark push: %v\n", err)
		return 1
	}
	res, err := publish.Push(ctx, *layoutDir, env, fs.Arg(0), publish.WithDefaultKeychain())
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark push: %v\n", err)
		return 1
	}
	fmt.Printf("pushed %s\nreferrer %s\ncosign attestation %s\n", res.Image, res.Referrer, res.CosignTag)
	return 0
}
