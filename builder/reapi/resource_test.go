package reapi_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hallmark-build/hallmark/builder/digest"
	"github.com/hallmark-build/hallmark/builder/reapi"
)

const h = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func TestParseReadResource(t *testing.T) {
	for _, tc := range []struct {
		name, in, instance string
		size               int64
		wantErr            string
	}{
		{"NoInstance", "blobs/" + h + "/0", "", 0, ""},
		{"Instance", "main/blobs/" + h + "/12", "main", 12, ""},
		{"NestedInstance", "a/b/c/blobs/" + h + "/3", "a/b/c", 3, ""},
		{"DigestFunction", "blobs/sha256/" + h + "/3", "", 3, ""},
		{"IdentityCompressed", "x/compressed-blobs/identity/" + h + "/3", "x", 3, ""},
		{"Zstd", "compressed-blobs/zstd/" + h + "/3", "", 0, "compressor"},
		{"OtherFunction", "blobs/md5/" + h + "/3", "", 0, "not supported"},
		{"UpperFunction", "blobs/SHA256/" + h + "/3", "", 0, "neither"},
		{"NoBlobs", "main/" + h + "/3", "", 0, "no blobs/"},
		{"ShortHash", "blobs/abc/3", "", 0, "neither"},
		{"UpperHash", "blobs/" + strings.ToUpper(h) + "/3", "", 0, "hex"},
		{"NegativeSize", "blobs/" + h + "/-3", "", 0, "negative"},
		{"PlusSize", "blobs/" + h + "/+3", "", 0, "canonical"},
		{"NoSize", "blobs/" + h, "", 0, "lacks"},
		{"Extra", "blobs/" + h + "/3/extra", "", 0, "extra"},
		{"Empty", "", "", 0, "no blobs/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := reapi.ParseReadResource(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseReadResource(%q) = %+v, %v; want an error mentioning %q", tc.in, r, err, tc.wantErr)
				}
				return
			}
			if err != nil || r.Instance != tc.instance || r.Digest != digest.MustNew(h, tc.size) {
				t.Fatalf("ParseReadResource(%q) = %+v, %v", tc.in, r, err)
			}
		})
	}
	if _, err := reapi.ParseReadResource("compressed-blobs/zstd/" + h + "/3"); !errors.Is(err, reapi.ErrCompressed) {
		t.Fatalf("zstd error %v is not ErrCompressed", err)
	}
}

func TestParseWriteResource(t *testing.T) {
	for _, tc := range []struct {
		name, in, instance, uuid, meta string
		wantErr                        string
	}{
		{"Plain", "uploads/u-1/blobs/" + h + "/5", "", "u-1", "", ""},
		{"InstanceAndMetadata", "i/uploads/u/blobs/" + h + "/5/some/meta", "i", "u", "some/meta", ""},
		{"DigestFunction", "uploads/u/blobs/sha256/" + h + "/5", "", "u", "", ""},
		{"Identity", "uploads/u/compressed-blobs/identity/" + h + "/5", "", "u", "", ""},
		{"NoUUID", "uploads//blobs/" + h + "/5", "", "", "", "upload id"},
		{"NoBlobs", "uploads/u/" + h + "/5", "", "", "", "want blobs/"},
		{"Read", "blobs/" + h + "/5", "", "", "", "no uploads/"},
		{"Short", "uploads/u", "", "", "", "upload id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := reapi.ParseWriteResource(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseWriteResource(%q) = %+v, %v; want an error mentioning %q", tc.in, r, err, tc.wantErr)
				}
				return
			}
			if err != nil || r.Instance != tc.instance || r.UUID != tc.uuid || r.Metadata != tc.meta || r.Digest != digest.MustNew(h, 5) {
				t.Fatalf("ParseWriteResource(%q) = %+v, %v", tc.in, r, err)
			}
		})
	}
}

func FuzzParseResource(f *testing.F) {
	for _, s := range []string{
		"blobs/" + h + "/0", "a/b/uploads/x/blobs/" + h + "/1/meta", "compressed-blobs/zstd/" + h + "/3",
		"uploads/u/blobs/sha256/" + h + "/5", "blobs//", "uploads", "////",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := reapi.ParseReadResource(s); err == nil {
			if !strings.Contains(s, r.Digest.Hash) || r.Digest.Size < 0 || !strings.HasPrefix(s, r.Instance) {
				t.Fatalf("ParseReadResource(%q) = %+v is not what the name says", s, r)
			}
		}
		if r, err := reapi.ParseWriteResource(s); err == nil {
			if r.UUID == "" || strings.Contains(r.UUID, "/") || !strings.Contains(s, r.Digest.String()) {
				t.Fatalf("ParseWriteResource(%q) = %+v is not what the name says", s, r)
			}
		}
	})
}

func TestCheckInstanceName(t *testing.T) {
	for name, ok := range map[string]bool{"": true, "main": true, "a/b": true, "a//b": false, "blobs": false, "x/uploads": false, "..": false} {
		if err := reapi.CheckInstanceName(name); (err == nil) != ok {
			t.Errorf("CheckInstanceName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}
