// Package store keeps per-name visit counts in memory.
package store

import "sync"

// Counter counts visits per name. The zero value is ready to use.
type Counter struct {
	mu     sync.Mutex
	visits map[string]int
}

// Visit records one visit of name and returns how many there have been.
func (c *Counter) Visit(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.visits == nil {
		c.visits = make(map[string]int)
	}
	c.visits[name]++
	return c.visits[name]
}
