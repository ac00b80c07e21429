package stream

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/sse"
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

// A batch written to a taken-over TLS connection goes out as few TLS records
// as possible: frames are coalesced into records of up to 16 KiB (a frame
// that large alone is written as it is), instead of one record per frame.
func TestTakenOverTLSBatchIsFewRecords(t *testing.T) {
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

	w := &takeoverWriter{conn: server, head: []byte("HTTP/1.1 200 OK\r\n\r\n")}
	small := func(n int) []*sse.Frame { // n events of 100 bytes
		var frames []*sse.Frame
		for i := range n {
			frames = append(frames, sse.Message("", []byte(strings.Repeat("x", 83)+string(rune('a'+i%26)))))
		}
		return frames
	}
	for _, tc := range []struct {
		name    string
		frames  []*sse.Frame
		records int64
	}{
		{"head and 100 small events (10 KiB)", small(100), 1},
		{"300 small events (30 KiB)", small(300), 2},
		// The small ones before it, the large one alone (16 KiB and the
		// rest: TLS splits it), the small ones after it.
		{"a 20 KiB event between small ones", append(append(small(3), sse.Message("", bytes.Repeat([]byte("y"), 20<<10))), small(3)...), 4},
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

// (head tests)
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

// A ResponseWriter that cannot be hijacked is left as it was: nothing is
// written, and the caller streams through it.
func TestTakeOverFallsBackWhenNotSupported(t *testing.T) {
	rec := httptest.NewRecorder()
	if takeOver(rec, func(msg string, err error) { t.Errorf("%s: %v", msg, err) }) != nil {
		t.Fatal("takeOver reported success on a ResponseRecorder")
	}
	if rec.Body.Len() != 0 || rec.Code != http.StatusOK || rec.Flushed {
		t.Errorf("something was written: code %d, body %q", rec.Code, rec.Body.String())
	}
}

func TestResponseHead(t *testing.T) {
	hdr := http.Header{
		"Content-Type":      {"text/event-stream"},
		"Content-Length":    {"12"},
		"Transfer-Encoding": {"chunked"},
		"Connection":        {"keep-alive"},
		"X-Multi":           {"a", "b"},
		"X-Crlf":            {"x\r\nInjected: 1"},
		"Bad Name":          {"v"},
		"Bad:Name":          {"v"},
		"Date":              {"Fri, 27 Nov 2026 08:05:00 GMT"},
	}
	got := string(responseHead(hdr))
	want := "HTTP/1.1 200 OK\r\n" +
		"Content-Type: text/event-stream\r\n" +
		"Date: Fri, 27 Nov 2026 08:05:00 GMT\r\n" +
		"X-Crlf: x  Injected: 1\r\n" +
		"X-Multi: a\r\n" +
		"X-Multi: b\r\n" +
		"Connection: close\r\n\r\n"
	if got != want {
		t.Errorf("head\n%q\nwant\n%q", got, want)
	}
}
