package notify

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// countingConn counts the writes that reach the connection beneath a TLS
// connection: after the handshake, each is one TLS record.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// A batch written to a hijacked TLS connection goes out as few TLS records
// as possible: frames are coalesced into records of up to 16 KiB (a frame
// that large alone is written as it is), instead of one record per frame.
func TestHijackedTLSBatchIsFewRecords(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate
	t.Cleanup(srv.Close)
	serverEnd, clientEnd := net.Pipe()
	counted := &countingConn{Conn: serverEnd}
	// Go sizes the first records of a connection small and lets them grow
	// (DynamicRecordSizingDisabled turns that off, as a server may): with
	// it off, each coalesced write of up to 16 KiB is one record.
	cfg := srv.TLS.Clone()
	cfg.DynamicRecordSizingDisabled = true
	server := tls.Server(counted, cfg)
	client := tls.Client(clientEnd, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test certificate
	t.Cleanup(func() { server.Close(); client.Close() })
	received := make(chan []byte, 1)
	go func() {
		var all bytes.Buffer
		_, _ = io.Copy(&all, client)
		received <- all.Bytes()
	}()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}

	w := &hijackWriter{conn: server, head: []byte("HTTP/1.1 200 OK\r\n\r\n")}
	small := func(n int) []*event { // n events of 100 bytes
		var frames []*event
		for i := range n {
			frames = append(frames, messageEvent([]byte(strings.Repeat("x", 83)+string(rune('a'+i%26)))))
		}
		return frames
	}
	for _, tc := range []struct {
		name    string
		frames  []*event
		records int64
	}{
		{"head and 100 small events (10 KiB)", small(100), 1},
		{"300 small events (30 KiB)", small(300), 2},
		// The small ones before it, the large one alone (16 KiB and the
		// rest: TLS splits it), the small ones after it.
		{"a 20 KiB event between small ones", append(append(small(3), messageEvent(bytes.Repeat([]byte("y"), 20<<10))), small(3)...), 4},
	} {
		before := counted.writes.Load()
		if err := w.writeFrames(tc.frames, 5*time.Second); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := counted.writes.Load() - before; got != tc.records {
			t.Errorf("%s: %d TLS records, want %d", tc.name, got, tc.records)
		}
	}
	server.Close()
	got := <-received
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 200 OK\r\n\r\ndata: ")) || !bytes.HasSuffix(got, []byte("\n\n")) {
		t.Fatalf("client received %d bytes starting %q", len(got), got[:min(len(got), 40)])
	}
}

// A config stop ends a hijacked stream whose writer is blocked on a client
// that stopped reading, within a second: no goroutine waits for the stop,
// the handler's connWatch closes the connection under the writer.
func TestStopEndsABlockedHijackedWrite(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice"))
	cfg := &caddyConfig{redis: rs, auth: auth, vars: map[string]string{"heartbeat": "15s"}, routes: `
	notify {
		redis {redis}
		auth_url {auth}
		heartbeat {heartbeat}
		max_message_size 2MiB
		queue_bytes 64MiB
		queue_size 1000
		write_timeout 1h
	}`}
	base := cfg.load(t)
	openBefore := testutil.ToFloat64(metrics.streamsOpen)

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer alice-token\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "stream registered", func() bool { return openSubscribers() == 1 })
	// More than the socket buffers hold: the writer blocks in a write.
	msg := bigMessage("alice", 0, 1_000_000)
	for range 24 {
		rs.publish(t, DefaultChannel, msg)
	}
	waitFor(t, 5*time.Second, "a writer blocked on the client", func() bool {
		n, _ := goroutinesIn(regexp.MustCompile(`notify\.\(\*stream\)\.(start|resume)`))
		return n == 1
	})
	time.Sleep(200 * time.Millisecond) // it stays blocked

	cfg.vars["heartbeat"] = "20s" // a reload stops the old config
	if err := cfg.reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the blocked stream ended", func() bool {
		return testutil.ToFloat64(metrics.streamsOpen) == openBefore
	})
}

func TestAppendHTTPDate(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 11, 27, 8, 5, 0, 0, time.UTC),
		time.Date(1999, 1, 1, 23, 59, 59, 999, time.FixedZone("x", 3600)),
		time.Date(2030, 12, 31, 0, 0, 9, 0, time.UTC),
		time.Now(),
	} {
		if got, want := string(appendHTTPDate(nil, tm)), tm.UTC().Format(http.TimeFormat); got != want {
			t.Errorf("%v: %q, want %q", tm, got, want)
		}
	}
}

// The head is what net/http's Header.WriteSubset writes, in the same order.
func TestResponseHeadMatchesWriteSubset(t *testing.T) {
	hdr := http.Header{
		"Content-Type":  {"text/event-stream"},
		"Cache-Control": {"no-cache"},
		"X-Padded":      {"  a b \t", "\r\nc\rd\n"},
		"X-Empty":       {""},
		"Date":          {"Fri, 27 Nov 2026 08:05:00 GMT"},
		"Server":        {"Caddy"},
	}
	var want bytes.Buffer
	want.WriteString("HTTP/1.1 200 OK\r\n")
	_ = hdr.WriteSubset(&want, headerExcluded)
	want.WriteString("Connection: close\r\n\r\n")
	if got := string(responseHead(hdr)); got != want.String() {
		t.Errorf("head\n%q\nwant\n%q", got, want.String())
	}
}
