package main

import (
	"net"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestMiniredisFallback takes the embedded Redis's default address (when
// nobody else holds it already) and checks that the demo's Redis goes to
// another port, which answers, rather than fail or share a port.
func TestMiniredisFallback(t *testing.T) {
	if l, err := net.Listen("tcp", defaultMiniredisAddr); err == nil {
		t.Cleanup(func() { l.Close() })
	}
	mr, err := startMiniredis("")
	if err != nil {
		t.Fatalf("startMiniredis: %v", err)
	}
	t.Cleanup(mr.Close)
	if mr.Addr() == defaultMiniredisAddr {
		t.Fatalf("the embedded Redis listens on %s, which was taken", mr.Addr())
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("PING the embedded Redis at %s: %v", mr.Addr(), err)
	}
}
