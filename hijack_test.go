package notify

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

// streamGoroutine matches the stack of a hijacked stream's goroutines: a
// writer (while it has something to write) and, where the poller is not
// available, its connection reader.
var streamGoroutine = regexp.MustCompile(`notify\.\(\*(stream\)\.(start|resume)|connWatch\)\.read)`)

// goroutinesIn returns how many goroutines have a stack that fn matches, and
// how many have any of the unwanted functions.
func goroutinesIn(fn *regexp.Regexp, unwanted ...string) (n, bad int) {
	buf := make([]byte, 16<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		// Only the frames count, not the "created by" line.
		g, _, _ = strings.Cut(g, "\ncreated by ")
		if fn.MatchString(g) {
			n++
		}
		for _, u := range unwanted {
			if strings.Contains(g, u) {
				bad++
				break
			}
		}
	}
	return n, bad
}

// An idle HTTP/1.1 stream runs no goroutine: neither Caddy's nor
// net/http's request goroutine remains, its writer runs only while it has
// something to write, and its client leaving is noticed by the handler's
// poller (one goroutine for all its streams). Everything is gone within a
// second of the client closing its connection.
func TestHijackedStreamsRunNoGoroutineWhileIdle(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice"))
	base := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
		heartbeat 50ms
	}`)
	url := base + "/"

	// The warm-up stream also starts the handler's poller.
	baseline, openBefore := warmUp(t, url, "alice-token")

	const n = 20
	var streams []*sseStream
	for range n {
		streams = append(streams, openStream(t, request(t, url, "alice-token")))
	}
	for _, s := range streams {
		s.expect(t, sseEvent{kind: frameRetry, retry: "3000"})
	}
	if got := testutil.ToFloat64(metrics.streamsOpen) - openBefore; got != n {
		t.Fatalf("streams_open rose by %v, want %d", got, n)
	}
	// No stream goroutine between writes (heartbeats every 50 ms start a
	// writer for a moment), none in the request chain, nor net/http's
	// background read. (The last request goroutines may still be returning
	// from ServeHTTP.)
	var inStream, inChain int
	deadline := time.Now().Add(2 * time.Second)
	for {
		inStream, inChain = goroutinesIn(streamGoroutine,
			"caddyhttp.(*Server).ServeHTTP", "notify.(*Handler).serveStream", "(*connReader).backgroundRead")
		if inStream == 0 && inChain == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if inStream != 0 || inChain != 0 {
		t.Fatalf("%d stream goroutines (want 0 while idle), %d in the request chain (want 0)", inStream, inChain)
	}
	// The streams cost no goroutine in all: the rise is the client's own
	// (its transport's read and write loops plus sseStream.read make three
	// per stream). Goroutines that are ending (the last requests' own, a
	// heartbeat's writer) or starting (a transport's loops) settle within a
	// moment on a busy machine.
	var got int
	deadline = time.Now().Add(2 * time.Second)
	for got = runtime.NumGoroutine() - baseline; got != n*3 && time.Now().Before(deadline); got = runtime.NumGoroutine() - baseline {
		time.Sleep(5 * time.Millisecond)
	}
	if got != n*3 {
		t.Errorf("goroutines rose by %d for %d streams, want %d (the client's)", got, n, n*3)
	}
	// Heartbeats and events flow through writers started on demand.
	rs.publish(t, DefaultChannel, `{"recipient_id":"alice","n":1}`)
	for _, s := range streams {
		if ev := s.next(t, 5*time.Second); ev.data != `{"recipient_id":"alice","n":1}` {
			t.Fatalf("got %q", ev.data)
		}
	}
	streams[0].expect(t, sseEvent{kind: frameComment, comment: " ping"})

	for _, s := range streams {
		s.close()
	}
	waitFor(t, time.Second, "subscribers removed", func() bool { return openSubscribers() == 0 })
	waitFor(t, time.Second, "streams_open back to its level", func() bool {
		return testutil.ToFloat64(metrics.streamsOpen) == openBefore
	})
	waitFor(t, time.Second, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}

var dateLine = regexp.MustCompile(`\r\nDate: ([^\r\n]+)\r\n`)

// The response head written after hijacking, byte for byte: the status line,
// every header set so far (an earlier header directive's, CORS), the
// stream's own, Date and Connection: close, no chunked encoding; then the
// retry field and the events as they come. Closing the socket ends the
// stream within a second.
func TestHijackedResponseHead(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice"))
	base := serve(t, rs, auth, `
	header X-Frame-Options DENY
	notify /events {
		redis {redis}
		auth_url {auth}
		cors http://app.example
	}`)

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://app.example\r\nAuthorization: Bearer alice-token\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	var head bytes.Buffer
	for !bytes.HasSuffix(head.Bytes(), []byte("retry: 3000\n\n")) {
		b, err := br.ReadByte()
		if err != nil {
			t.Fatalf("reading the head: %v (so far %q)", err, head.String())
		}
		head.WriteByte(b)
	}
	m := dateLine.FindStringSubmatch(head.String())
	if m == nil {
		t.Fatalf("no Date header in %q", head.String())
	}
	if _, err := http.ParseTime(m[1]); err != nil {
		t.Errorf("Date %q: %v", m[1], err)
	}
	want := "HTTP/1.1 200 OK\r\n" +
		"Access-Control-Allow-Credentials: true\r\n" +
		"Access-Control-Allow-Origin: http://app.example\r\n" +
		"Cache-Control: no-cache\r\n" +
		"Content-Type: text/event-stream\r\n" +
		"Server: Caddy\r\n" +
		"Vary: Origin\r\n" +
		"X-Accel-Buffering: no\r\n" +
		"X-Frame-Options: DENY\r\n" +
		"Date: " + m[1] + "\r\n" +
		"Connection: close\r\n" +
		"\r\n" +
		"retry: 3000\n\n"
	if head.String() != want {
		t.Fatalf("head\n%q\nwant\n%q", head.String(), want)
	}

	waitFor(t, 5*time.Second, "stream registered", func() bool { return openSubscribers() == 1 })
	rs.publish(t, DefaultChannel, `{"recipient_id":"alice","n":1}`)
	rs.publish(t, DefaultChannel, `{"recipient_id":"alice","n":2}`)
	wantBody := "data: {\"recipient_id\":\"alice\",\"n\":1}\n\ndata: {\"recipient_id\":\"alice\",\"n\":2}\n\n"
	body := make([]byte, len(wantBody))
	if _, err := io.ReadFull(br, body); err != nil || string(body) != wantBody {
		t.Fatalf("body %q, err %v; want %q", body, err, wantBody)
	}

	conn.Close()
	waitFor(t, time.Second, "stream released after the client closed", func() bool { return openSubscribers() == 0 })
}

// The server ends a hijacked stream by closing the connection: a client
// reading to EOF sees a complete response.
func TestHijackedStreamEndsWithConnectionClose(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice"))
	base := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
		queue_size 1
	}`)
	s := openStream(t, request(t, base+"/", "alice-token"))
	if s.resp.ProtoMajor != 1 || !s.resp.Close || len(s.resp.TransferEncoding) != 0 || s.resp.ContentLength != -1 {
		t.Fatalf("proto %d, close %v, transfer-encoding %v, content-length %d: want HTTP/1.x delimited by close",
			s.resp.ProtoMajor, s.resp.Close, s.resp.TransferEncoding, s.resp.ContentLength)
	}
	// Closing the subscriber, as the hub does on overflow, closes the
	// connection: the body ends cleanly.
	waitFor(t, 5*time.Second, "stream registered", func() bool { return openSubscribers() == 1 })
	eachSubscriber(func(sub *subscriber) { sub.close() })
	s.waitEnded(t, 2*time.Second)
	if s.err != io.EOF {
		t.Errorf("body ended with %v, want EOF", s.err)
	}
	waitFor(t, time.Second, "stream released", func() bool { return openSubscribers() == 0 })
}

// Without Hijack support the stream is not taken over and nothing is written.
func TestHijackFallsBackWhenNotSupported(t *testing.T) {
	h := &Handler{logger: zap.NewNop()}
	openBefore := testutil.ToFloat64(metrics.streamsOpen)
	rec := httptest.NewRecorder()
	if h.hijack(rec) != nil {
		t.Fatal("hijack reported success on a ResponseRecorder")
	}
	if rec.Body.Len() != 0 || rec.Code != http.StatusOK || rec.Flushed {
		t.Errorf("something was written: code %d, body %q", rec.Code, rec.Body.String())
	}
	if got := testutil.ToFloat64(metrics.streamsOpen); got != openBefore {
		t.Errorf("streams_open changed by %v", got-openBefore)
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
