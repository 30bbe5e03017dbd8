package digest_test

import (
	"errors"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/hallmark-build/hallmark/builder/digest"
)

func TestNew(t *testing.T) {
	good := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name string
		hash string
		size int64
		ok   bool
	}{
		{"Valid", good, 3, true},
		{"Empty", digest.Empty.Hash, 0, true},
		{"NegativeSize", good, -1, false},
		{"Short", good[:62], 3, false},
		{"UpperCase", strings.ToUpper(good), 3, false},
		{"NotHex", strings.Repeat("zz", 32), 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := digest.New(tc.hash, tc.size)
			if (err == nil) != tc.ok {
				t.Fatalf("New(%q, %d) = %v, want ok=%v", tc.hash, tc.size, err, tc.ok)
			}
			if err != nil && !errors.Is(err, digest.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
		})
	}
}

func TestOfBytesAndHasherAgree(t *testing.T) {
	if digest.OfBytes(nil) != digest.Empty {
		t.Fatalf("OfBytes(nil) = %v, want the empty digest", digest.OfBytes(nil))
	}
	h := digest.NewHasher()
	h.Write([]byte("hello "))
	h.Write([]byte("world"))
	if h.Digest() != digest.OfBytes([]byte("hello world")) {
		t.Fatal("incremental and one-shot digests differ")
	}
	d, err := digest.OfReader(strings.NewReader("hello world"))
	if err != nil || d != h.Digest() {
		t.Fatalf("OfReader = %v, %v", d, err)
	}
}

func TestFromProtoAndCheckFunction(t *testing.T) {
	if _, err := digest.FromProto(nil); !errors.Is(err, digest.ErrInvalid) {
		t.Fatalf("FromProto(nil) = %v, want ErrInvalid", err)
	}
	d := digest.OfBytes([]byte("x"))
	if got, err := digest.FromProto(d.ToProto()); err != nil || got != d {
		t.Fatalf("round trip = %v, %v", got, err)
	}
	for fn, ok := range map[repb.DigestFunction_Value]bool{repb.DigestFunction_UNKNOWN: true, repb.DigestFunction_SHA256: true, repb.DigestFunction_MD5: false, repb.DigestFunction_BLAKE3: false} {
		if err := digest.CheckFunction(fn); (err == nil) != ok {
			t.Errorf("CheckFunction(%v) = %v, want ok=%v", fn, err, ok)
		}
	}
}

func TestSetSorted(t *testing.T) {
	s := digest.Set{}
	a, b := digest.OfBytes([]byte("a")), digest.OfBytes([]byte("b"))
	s.Add(b)
	s.Add(a)
	s.Add(a)
	got := s.Sorted()
	if len(got) != 2 || got[0].Hash > got[1].Hash || !s.Has(a) {
		t.Fatalf("Sorted() = %v", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(digest.OfBytes([]byte("x")).String())
	f.Add("abc/12")
	f.Add(digest.Empty.Hash + "/-1")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := digest.Parse(s)
		if err != nil {
			return
		}
		if d.String() != s {
			// Leading zeros or "+" in the size parse to the same number.
			back, err := digest.Parse(d.String())
			if err != nil || back != d {
				t.Fatalf("Parse(%q) = %v, which does not round-trip", s, d)
			}
		}
		if d.Size < 0 || len(d.Hash) != 64 {
			t.Fatalf("Parse(%q) accepted %v", s, d)
		}
	})
}
