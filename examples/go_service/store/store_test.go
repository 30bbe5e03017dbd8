package store_test

import (
	"sync"
	"testing"

	"example.com/go_service/store"
)

func TestVisitConcurrent(t *testing.T) {
	var c store.Counter
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.Visit("a") }()
	}
	wg.Wait()
	if got := c.Visit("a"); got != 51 {
		t.Fatalf("Visit after 50 concurrent visits = %d, want 51", got)
	}
	if got := c.Visit("b"); got != 1 {
		t.Fatalf("first Visit(b) = %d, want 1", got)
	}
}
