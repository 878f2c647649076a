package daemon

import (
	"context"
	"sync"
	"time"
)

// cached is a value computed at most once per maxAge whatever the request
// rate, so that a loop of /status or /healthz requests (any local user can
// make them) costs the engine's locks and the kernel one computation per
// period, not one per request. The first get computes and waits; later ones
// get the last value at once while one refresh runs in the background.
type cached[T any] struct {
	maxAge  time.Duration
	timeout time.Duration // for one background computation
	compute func(context.Context) T

	first sync.Mutex // one first computation; the others wait for it

	mu         sync.Mutex // guards v, at, ok and refreshing
	v          T
	at         time.Time
	ok         bool
	refreshing bool
}

func newCached[T any](maxAge, timeout time.Duration, compute func(context.Context) T) *cached[T] {
	return &cached[T]{maxAge: maxAge, timeout: timeout, compute: compute}
}

func (c *cached[T]) get(ctx context.Context) T {
	c.mu.Lock()
	if !c.ok {
		c.mu.Unlock()
		c.first.Lock()
		defer c.first.Unlock()
		c.mu.Lock()
		if !c.ok {
			c.mu.Unlock()
			v := c.compute(ctx)
			c.mu.Lock()
			c.v, c.at, c.ok = v, time.Now(), true
		}
		v := c.v
		c.mu.Unlock()
		return v
	}
	v := c.v
	if time.Since(c.at) >= c.maxAge && !c.refreshing {
		c.refreshing = true
		go c.refresh()
	}
	c.mu.Unlock()
	return v
}

func (c *cached[T]) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	v := c.compute(ctx)
	c.mu.Lock()
	c.v, c.at, c.refreshing = v, time.Now(), false
	c.mu.Unlock()
}
