package execlog_test

import (
	"context"
	"sync"
	"testing"

	"github.com/hallmark-build/hallmark/builder/execlog"
)

// BenchmarkOpenReadOnly5000 measures loading and verifying a 5,000-record log.
func BenchmarkOpenReadOnly5000(b *testing.B) {
	dir := b.TempDir()
	l, err := execlog.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 50; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if _, err := l.Append(context.Background(), rec(w*100+i)); err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	l.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := execlog.OpenReadOnly(dir)
		if err != nil {
			b.Fatal(err)
		}
		if s, _ := r.Head(); s != 5000 {
			b.Fatalf("head %d", s)
		}
	}
}

// BenchmarkAppendParallel measures group-committed appends from many goroutines.
func BenchmarkAppendParallel(b *testing.B) {
	l, err := execlog.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := l.Append(context.Background(), rec(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
