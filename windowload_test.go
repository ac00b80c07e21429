package notify

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestWindowLoadRacingXDEL deletes an entry while a starting reader loads
// its window: after its XINFO STREAM, before its XREVRANGE. The window lacks
// the entry, and the XINFO read before shows no deletion; a client that
// resumes from before the entry must still be told (history_truncated),
// not be served a silent gap from memory.
func TestWindowLoadRacingXDEL(t *testing.T) {
	rs := startRedis(t)
	c := rs.client()
	t.Cleanup(func() { c.Close() })
	var ids []entryID
	for i := 1; i <= 10; i++ {
		id, _ := parseEntryID(xadd(t, c, numberedMsg("alice", i)))
		ids = append(ids, id)
	}
	// Entry 6 goes just before the first XREVRANGE reaches Redis.
	proxy := startCommandProxy(t, rs.Addr(), "xrevrange", func() {
		if err := c.XDel(t.Context(), testStream, ids[5].String()).Err(); err != nil {
			t.Errorf("XDEL: %v", err)
		}
	})
	opts, err := redisOptions("redis://" + proxy)
	if err != nil {
		t.Fatal(err)
	}
	hs := newHubSet(opts, source{stream: testStream, history: historyConfig{100, 1 << 20}}, zap.NewNop())
	t.Cleanup(func() { _ = hs.Destruct() })
	hb := hs.hubs[0]
	ix := hb.attach(indexKey{dataField: "data", recipientField: "recipient_id"})
	if !hb.waitUp(t.Context(), 5*time.Second) {
		t.Fatal("reader not up")
	}

	sub := newSubscriber("alice", false, nil, queueLimit{events: 16})
	p, err := hb.register(t.Context(), ix, sub, &ids[2], 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range p.replay {
		got = append(got, ev.id.String())
	}
	if p.reason != resetTruncated {
		t.Fatalf("resuming after entry 3 got reset %q and %v; want a history_truncated reset: entry 6 (%s) is gone",
			p.reason, got, ids[5])
	}
	want := []entryID{ids[3], ids[4], ids[6], ids[7], ids[8], ids[9]}
	if len(p.replay) != len(want) {
		t.Fatalf("replay %v, want entries 4, 5, 7-10", got)
	}
	for i, ev := range p.replay {
		if ev.id != want[i] {
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
