package blobstore_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/hallmark-build/hallmark/builder/blobstore"
	"github.com/hallmark-build/hallmark/builder/digest"
)

func BenchmarkDiskPutSmall(b *testing.B) {
	for name, opts := range map[string][]blobstore.DiskOption{
		"Sync":   nil,
		"NoSync": {blobstore.WithoutFsyncUnsafe()},
	} {
		b.Run(name, func(b *testing.B) {
			s, err := blobstore.NewDisk(b.TempDir(), opts...)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				content := []byte(fmt.Sprintf("blob number %d", i))
				if err := s.Put(ctx, digest.OfBytes(content), bytes.NewReader(content)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
