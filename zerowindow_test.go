package notify

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-notify/notify/internal/testkit"
)

// zeroWindowClient is an h2c client that never opens a flow-control window:
// the server may send HEADERS, but no DATA.
type zeroWindowClient struct {
	t      *testing.T
	conn   net.Conn
	wmu    sync.Mutex // the framer's writes come from two goroutines
	framer *http2.Framer
	resets chan uint32 // stream IDs the server reset
	heads  chan uint32 // stream IDs whose response HEADERS came
}

func dialZeroWindow(t *testing.T, addr string) *zeroWindowClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	c := &zeroWindowClient{t: t, conn: conn, framer: http2.NewFramer(conn, conn),
		resets: make(chan uint32, 100), heads: make(chan uint32, 100)}
	if err := c.framer.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); c.read() }()
	t.Cleanup(func() { conn.Close(); <-done })
	return c
}

// read answers the server's SETTINGS and records HEADERS and RST_STREAM.
func (c *zeroWindowClient) read() {
	for {
		f, err := c.framer.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.wmu.Lock()
				_ = c.framer.WriteSettingsAck()
				c.wmu.Unlock()
			}
		case *http2.HeadersFrame:
			c.heads <- f.StreamID
		case *http2.RSTStreamFrame:
			c.resets <- f.StreamID
		}
		// A GOAWAY (a reload shuts the old server down gracefully) ends
		// nothing by itself: the streams it leaves open must be reset.
	}
}

// open sends the HEADERS of a stream request with a bearer token.
func (c *zeroWindowClient) open(id uint32, authority, token string) {
	c.t.Helper()
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{
		{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", authority},
		{"authorization", "Bearer " + token},
	} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	c.wmu.Lock()
	err := c.framer.WriteHeaders(http2.HeadersFrameParam{
		StreamID: id, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true,
	})
	c.wmu.Unlock()
	if err != nil {
		c.t.Fatal(err)
	}
}

// waitResets waits until every stream in ids was reset by the server.
func (c *zeroWindowClient) waitResets(ids []uint32, within time.Duration) {
	c.t.Helper()
	want := map[uint32]bool{}
	for _, id := range ids {
		want[id] = true
	}
	deadline := time.After(within)
	for len(want) > 0 {
		select {
		case id := <-c.resets:
			delete(want, id)
		case <-deadline:
			c.t.Fatalf("%d streams still open after %s", len(want), within)
		}
	}
}

// An HTTP/2 client that opens no flow-control window cannot keep a stream
// past write_timeout, from the very first byte (the retry field), nor past
// the end of a drain (a reload that changes the handler's identity), nor
// past a stop.
func TestZeroWindowHTTP2Client(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	cfg := &caddyConfig{
		redis: rs,
		auth:  auth,
		global: `
	servers {
		protocols h1 h2c
	}`,
		routes: `
	notify {
		redis {redis}
		auth_url {auth}
		write_timeout {write_timeout}
		channel {channel}
		reload_drain 0
	}`,
		port: testkit.FreePort(t),
	}
	load := func(t *testing.T, writeTimeout string) {
		cfg.vars = map[string]string{"write_timeout": writeTimeout, "channel": defaultChannel}
		cfg.load(t)
	}
	port := cfg.port
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ids := []uint32{1, 3, 5, 7, 9, 11, 13, 15, 17, 19}
	openAll := func(t *testing.T) *zeroWindowClient {
		c := dialZeroWindow(t, addr)
		for _, id := range ids {
			c.open(id, addr, "alice-token")
		}
		for range ids {
			select {
			case <-c.heads:
			case <-time.After(5 * time.Second):
				t.Fatal("no response HEADERS")
			}
		}
		for range 300 {
			rs.Publish(t, defaultChannel, `{"recipient_id":"alice","pad":"`+string(bytes.Repeat([]byte("x"), 200))+`"}`)
		}
		return c
	}

	t.Run("write_timeout", func(t *testing.T) {
		load(t, "1s")
		c := openAll(t)
		c.waitResets(ids, 3*time.Second)
		testkit.WaitFor(t, 2*time.Second, "streams released", func() bool { return openSubscribers() == 0 })
	})
	t.Run("drain", func(t *testing.T) {
		load(t, "1h")
		c := openAll(t)
		time.Sleep(200 * time.Millisecond) // every stream is blocked writing
		start := time.Now()
		cfg.vars["channel"] = "other"
		if err := cfg.reload(); err != nil { // the streams drain, and cannot end cleanly
			t.Fatal(err)
		}
		c.waitResets(ids, 2*time.Second)
		t.Logf("streams reset %s after the reload began (reload_drain 0, and a second)", time.Since(start))
		testkit.WaitFor(t, 2*time.Second, "streams released", func() bool { return openSubscribers() == 0 })
	})
	t.Run("stop", func(t *testing.T) {
		load(t, "1h")
		c := openAll(t)
		time.Sleep(200 * time.Millisecond) // every stream is blocked writing
		start := time.Now()
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
		c.waitResets(ids, time.Second)
		t.Logf("streams reset %s after the stop began", time.Since(start))
		testkit.WaitFor(t, 2*time.Second, "streams released", func() bool { return openSubscribers() == 0 })
	})
}
