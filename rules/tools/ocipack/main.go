// Command ocipack packs files into an OCI image layout (FROM scratch: one
// uncompressed layer, no base image), byte for byte the same for the same
// inputs: tar entries are sorted, owned by 0:0, dated at the Unix epoch, and
// the JSON documents have a fixed field order.
//
//	ocipack --out=DIR --manifest=FILE --digest=FILE \
//	    --file=/app/server=path/to/server:0755 [--file=DEST=SRC[:MODE] ...] \
//	    [--entrypoint=/app/server ...] [--env=K=V ...] [--os=linux] [--arch=amd64]
//
// DIR receives the layout (oci-layout, index.json, blobs/sha256/...), FILE a
// copy of the image manifest (its sha256 is the image digest) and the
// digest file "sha256:<hex>". It is the tool of hallmark_oci_image and uses
// the Go standard library only, so rules_go builds it with no dependencies.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Media types of the OCI image spec.
const (
	MediaManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaConfig   = "application/vnd.oci.image.config.v1+json"
	MediaLayer    = "application/vnd.oci.image.layer.v1.tar"
	MediaIndex    = "application/vnd.oci.image.index.v1+json"
)

// Entry is one file of the image.
type Entry struct {
	Dest string // absolute path in the image
	Src  string // path on disk
	Mode int64
}

// ParseEntry reads DEST=SRC[:MODE] (MODE octal, default 0644).
func ParseEntry(s string) (Entry, error) {
	dest, src, ok := strings.Cut(s, "=")
	if !ok || dest == "" || src == "" {
		return Entry{}, fmt.Errorf("--file %q: want DEST=SRC[:MODE]", s)
	}
	e := Entry{Dest: dest, Src: src, Mode: 0o644}
	if i := strings.LastIndex(src, ":"); i >= 0 {
		m, err := strconv.ParseInt(src[i+1:], 8, 32)
		if err != nil || m < 0 || m > 0o7777 {
			return Entry{}, fmt.Errorf("--file %q: mode %q is not octal permissions", s, src[i+1:])
		}
		e.Src, e.Mode = src[:i], m
	}
	if !strings.HasPrefix(e.Dest, "/") || path.Clean(e.Dest) != e.Dest || e.Dest == "/" {
		return Entry{}, fmt.Errorf("--file %q: destination must be a clean absolute file path", s)
	}
	return e, nil
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		Entrypoint []string `json:"Entrypoint,omitempty"`
		Env        []string `json:"Env,omitempty"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// Image is the packed result.
type Image struct {
	Blobs    map[string][]byte // "sha256:<hex>" -> content
	Manifest []byte
	Digest   string
	Index    []byte
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// Layer writes a deterministic tar of entries, with parent directories.
func Layer(entries []Entry, read func(string) ([]byte, error)) ([]byte, error) {
	sort.Slice(entries, func(i, j int) bool { return entries[i].Dest < entries[j].Dest })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	dirs := map[string]bool{}
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.Dest] {
			return nil, fmt.Errorf("%s is given twice", e.Dest)
		}
		seen[e.Dest] = true
		var parents []string
		for d := path.Dir(e.Dest); d != "/"; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			if seen[d] {
				return nil, fmt.Errorf("%s is both a file and a directory", d)
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		}
		if dirs[e.Dest] {
			return nil, fmt.Errorf("%s is both a file and a directory", e.Dest)
		}
		b, err := read(e.Src)
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(e.Dest, "/"), Mode: e.Mode, Size: int64(len(b)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Pack builds the image from entries.
func Pack(entries []Entry, entrypoint, env []string, goos, arch string, read func(string) ([]byte, error)) (*Image, error) {
	if len(entries) == 0 {
		return nil, errors.New("no files to pack")
	}
	layer, err := Layer(entries, read)
	if err != nil {
		return nil, err
	}
	var cfg imageConfig
	cfg.Architecture, cfg.OS = arch, goos
	cfg.Config.Entrypoint, cfg.Config.Env = entrypoint, env
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{sum(layer)}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	m := manifest{SchemaVersion: 2, MediaType: MediaManifest,
		Config: descriptor{MediaType: MediaConfig, Digest: sum(cfgJSON), Size: int64(len(cfgJSON))},
		Layers: []descriptor{{MediaType: MediaLayer, Digest: sum(layer), Size: int64(len(layer))}}}
	mJSON, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	idx, err := json.Marshal(index{SchemaVersion: 2, MediaType: MediaIndex,
		Manifests: []descriptor{{MediaType: MediaManifest, Digest: sum(mJSON), Size: int64(len(mJSON))}}})
	if err != nil {
		return nil, err
	}
	return &Image{
		Blobs:    map[string][]byte{sum(layer): layer, sum(cfgJSON): cfgJSON, sum(mJSON): mJSON},
		Manifest: mJSON, Digest: sum(mJSON), Index: idx,
	}, nil
}

// WriteLayout writes img as an OCI image layout into dir (created).
func WriteLayout(img *Image, dir string) error {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), img.Index, 0o644); err != nil {
		return err
	}
	for d, b := range img.Blobs {
		if err := os.WriteFile(filepath.Join(blobs, strings.TrimPrefix(d, "sha256:")), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("ocipack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory for the OCI image layout (required)")
	manifestOut := fs.String("manifest", "", "file for a copy of the image manifest (required)")
	digestOut := fs.String("digest", "", "file for the image digest, sha256:<hex> (required)")
	goos := fs.String("os", "linux", "image OS")
	arch := fs.String("arch", "amd64", "image architecture")
	var files, entrypoint, env multi
	fs.Var(&files, "file", "DEST=SRC[:MODE], repeatable")
	fs.Var(&entrypoint, "entrypoint", "entrypoint argument, repeatable")
	fs.Var(&env, "env", "K=V environment of the image, repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *manifestOut == "" || *digestOut == "" {
		return errors.New("--out, --manifest and --digest are required")
	}
	var entries []Entry
	for _, f := range files {
		e, err := ParseEntry(f)
		if err != nil {
			return err
		}
		entries = append(entries, e)
	}
	img, err := Pack(entries, entrypoint, env, *goos, *arch, os.ReadFile)
	if err != nil {
		return err
	}
	if err := WriteLayout(img, *out); err != nil {
		return err
	}
	if err := os.WriteFile(*manifestOut, img.Manifest, 0o644); err != nil {
		return err
	}
	return os.WriteFile(*digestOut, []byte(img.Digest+"\n"), 0o644)
}

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ocipack:", err)
		os.Exit(1)
	}
}
