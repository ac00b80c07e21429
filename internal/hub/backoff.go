package hub

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	backoffMin = 100 * time.Millisecond
	// MaxBackoff is the longest wait between two attempts to read a
	// source again: a client refused while Redis is down may come back
	// after it.
	MaxBackoff = 5 * time.Second
	// clusterBackoffMax caps the delay for a Redis Cluster: after a
	// failover, go-redis routes to the dead master until its slot map
	// reloads, which the failed attempt itself triggers; the next attempt
	// must come soon after, not up to 5 s later.
	clusterBackoffMax = time.Second
)

// backoff is the capped exponential delay between reconnection attempts.
type backoff struct {
	cur, max time.Duration
}

// newBackoff returns the reconnection delay for client, capped lower for a
// cluster (see clusterBackoffMax).
func newBackoff(client redis.UniversalClient) *backoff {
	b := &backoff{cur: backoffMin, max: MaxBackoff}
	if _, ok := client.(*redis.ClusterClient); ok {
		b.max = clusterBackoffMax
	}
	return b
}

// wait sleeps for the current delay, with jitter, and doubles it; it
// reports false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	d := b.cur
	b.cur = min(2*d, b.max)
	return sleepCtx(ctx, jitter(d))
}

func (b *backoff) reset() { b.cur = backoffMin }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// jitter spreads reconnects of several Caddy instances by ±20 %.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + rand.N(2*d/5+1)
}

// sleepCtx sleeps for d and reports false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// waitClosed waits up to d for ch to be closed and reports whether it was.
func waitClosed(ctx context.Context, ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}
