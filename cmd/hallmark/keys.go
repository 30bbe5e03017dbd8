package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hallmark-build/hallmark/signer/key"
)

func init() {
	register(&command{name: "keys generate", summary: "make a signer key pair: DIR/signer.key (0600) and DIR/signer.pub", run: runKeysGenerate})
}

func runKeysGenerate(_ context.Context, args []string) int {
	fs := flag.NewFlagSet("hallmark keys generate", flag.ContinueOnError)
	out := fs.String("out", "", "directory to write signer.key and signer.pub into (created 0700 if absent); required")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: hallmark keys generate --out DIR")
		return 2
	}
	id, err := key.Generate(*out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hallmark keys generate: %v\n", err)
		return 1
	}
	fmt.Printf("wrote %s and %s\nkey id %s\n", filepath.Join(*out, key.PrivateKeyFile), filepath.Join(*out, key.PublicKeyFile), id)
	return 0
}
