package hub

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/sse"
	"github.com/caddy-notify/notify/internal/streamid"
	"github.com/caddy-notify/notify/internal/testkit"
)

// TestWindowLoadRacingXDEL deletes an entry while a starting reader loads
// its window: after its XINFO STREAM, before its first read of history. The window lacks
// the entry, and the XINFO read before shows no deletion; a client that
// resumes from before the entry must still be told (history_truncated),
// not be served a silent gap from memory.
func TestWindowLoadRacingXDEL(t *testing.T) {
	rs := testkit.StartRedis(t)
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	var ids []streamid.ID
	for i := 1; i <= 10; i++ {
		id, _ := streamid.Parse(xadd(t, c, numberedMsg("alice", i)))
		ids = append(ids, id)
	}
	// Entry 6 goes just before the first read of the history (the range
	// script, xrange.go) reaches Redis.
	proxy := startCommandProxy(t, rs.Addr(), "evalsha", func() {
		if err := c.XDel(t.Context(), testStream, ids[5].String()).Err(); err != nil {
			t.Errorf("XDEL: %v", err)
		}
	})
	hs := newTestSet(t, "redis://"+proxy, Source{Stream: testStream, History: History{100, 1 << 20}}, Options{})
	hb := hs.hubs[0]
	ix := hb.Attach(index.Key{DataField: "data", Fields: message.Fields{Recipient: "recipient_id"}})
	if !hb.WaitUp(t.Context(), 5*time.Second) {
		t.Fatal("reader not up")
	}

	sub, _ := parkedSubscriber("alice")
	p, err := hb.Register(t.Context(), ix, sub, nil, &ids[2], 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range p.replay {
		got = append(got, frameID(f))
	}
	if p.reason != sse.ResetTruncated {
		t.Fatalf("resuming after entry 3 got reset %q and %v; want a history_truncated reset: entry 6 (%s) is gone",
			p.reason, got, ids[5])
	}
	want := []streamid.ID{ids[3], ids[4], ids[6], ids[7], ids[8], ids[9]}
	if len(p.replay) != len(want) {
		t.Fatalf("replay %v, want entries 4, 5, 7-10", got)
	}
	for i, id := range frameIDs(p.replay) {
		if id != want[i] {
			t.Fatalf("replay %v, want entries 4, 5, 7-10", got)
		}
	}
}

// startCommandProxy forwards TCP connections to target and calls hook once,
// before it forwards the first bytes from a client that contain command
// (go-redis writes command names in lower case, each command in one write).
// It returns the proxy's address.
func startCommandProxy(t *testing.T, target, command string, hook func()) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		once  sync.Once
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	track := func(cs ...net.Conn) {
		mu.Lock()
		conns = append(conns, cs...)
		mu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			track(client, server)
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(client, server)
				client.Close()
			}()
			go func() {
				defer wg.Done()
				defer server.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := client.Read(buf)
					if n > 0 {
						if bytes.Contains(buf[:n], []byte(command)) {
							once.Do(hook)
						}
						if _, err := server.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
