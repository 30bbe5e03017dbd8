package reapi

import (
	"errors"
	"fmt"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// ErrCompressed is returned (wrapped) by the resource name parsers for a
// compressed-blobs name with a compressor other than identity, which this
// farm does not offer.
var ErrCompressed = errors.New("compressed blobs are not supported")

// Resource is a parsed ByteStream resource name.
type Resource struct {
	Instance string
	// UUID identifies an upload; empty for reads.
	UUID   string
	Digest digest.Digest
	// Metadata is what follows the size in an upload name, if anything.
	Metadata string
}

// ParseReadResource parses "{instance_name/}blobs/{hash}/{size}", also with a
// digest function segment ("blobs/sha256/{hash}/{size}") and as
// "compressed-blobs/identity/{hash}/{size}".
func ParseReadResource(name string) (Resource, error) {
	segs := strings.Split(name, "/")
	i := indexAny(segs, "blobs", "compressed-blobs")
	if i < 0 {
		return Resource{}, fmt.Errorf("resource name %q has no blobs/ segment; want {instance_name/}blobs/{hash}/{size}", clip(name))
	}
	r := Resource{Instance: strings.Join(segs[:i], "/")}
	d, rest, err := parseBlob(name, segs[i:])
	if err != nil {
		return Resource{}, err
	}
	if len(rest) != 0 {
		return Resource{}, fmt.Errorf("resource name %q has extra segments after the size", clip(name))
	}
	r.Digest = d
	return r, nil
}

// ParseWriteResource parses
// "{instance_name/}uploads/{uuid}/blobs/{hash}/{size}{/optional_metadata}",
// also with a digest function segment and as compressed-blobs/identity.
func ParseWriteResource(name string) (Resource, error) {
	segs := strings.Split(name, "/")
	i := indexAny(segs, "uploads")
	if i < 0 {
		return Resource{}, fmt.Errorf("resource name %q has no uploads/ segment; want {instance_name/}uploads/{uuid}/blobs/{hash}/{size}", clip(name))
	}
	if len(segs) < i+3 || segs[i+1] == "" {
		return Resource{}, fmt.Errorf("resource name %q lacks an upload id after uploads/", clip(name))
	}
	r := Resource{Instance: strings.Join(segs[:i], "/"), UUID: segs[i+1]}
	if segs[i+2] != "blobs" && segs[i+2] != "compressed-blobs" {
		return Resource{}, fmt.Errorf("resource name %q: want blobs/ after the upload id, got %q", clip(name), clip(segs[i+2]))
	}
	d, rest, err := parseBlob(name, segs[i+2:])
	if err != nil {
		return Resource{}, err
	}
	r.Digest = d
	r.Metadata = strings.Join(rest, "/")
	return r, nil
}

func indexAny(segs []string, words ...string) int {
	for i, s := range segs {
		for _, w := range words {
			if s == w {
				return i
			}
		}
	}
	return -1
}

// parseBlob reads segs = ["blobs"|"compressed-blobs", ...] and returns the
// digest and what follows it.
func parseBlob(name string, segs []string) (digest.Digest, []string, error) {
	kind, segs := segs[0], segs[1:]
	if kind == "compressed-blobs" {
		if len(segs) == 0 {
			return digest.Digest{}, nil, fmt.Errorf("resource name %q lacks the compressor after compressed-blobs/", clip(name))
		}
		if segs[0] != "identity" {
			return digest.Digest{}, nil, fmt.Errorf("%w: resource name %q uses compressor %q; this farm offers none", ErrCompressed, clip(name), clip(segs[0]))
		}
		segs = segs[1:]
	}
	// An optional digest function name precedes the hash; a hash is 64 hex
	// characters, a function name never is.
	if len(segs) > 0 && len(segs[0]) != 64 {
		fn, ok := repb.DigestFunction_Value_value[strings.ToUpper(segs[0])]
		if !ok || strings.ToLower(segs[0]) != segs[0] {
			return digest.Digest{}, nil, fmt.Errorf("resource name %q: %q is neither a SHA-256 hash nor a digest function", clip(name), clip(segs[0]))
		}
		if err := digest.CheckFunction(repb.DigestFunction_Value(fn)); err != nil || fn == 0 {
			return digest.Digest{}, nil, fmt.Errorf("resource name %q: digest function %q is not supported; this farm uses sha256", clip(name), segs[0])
		}
		segs = segs[1:]
	}
	if len(segs) < 2 {
		return digest.Digest{}, nil, fmt.Errorf("resource name %q lacks {hash}/{size}", clip(name))
	}
	d, err := digest.Parse(segs[0] + "/" + segs[1])
	if err != nil {
		return digest.Digest{}, nil, fmt.Errorf("resource name %q: %w", clip(name), err)
	}
	if d.String() != segs[0]+"/"+segs[1] {
		return digest.Digest{}, nil, fmt.Errorf("%w: resource name %q: size %q is not in canonical decimal form", digest.ErrInvalid, clip(name), clip(segs[1]))
	}
	return d, segs[2:], nil
}
