package notify

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-notify/notify/internal/testkit"
)

// streamGoroutine matches the stack of a hijacked stream's goroutines: a
// writer (while it has something to write) and, where the poller is not
// available, its connection reader.
var streamGoroutine = regexp.MustCompile(`stream\.\(\*(Stream\)\.(start|resume)|Set\)\.read)`)

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
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
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
	var streams []*testkit.Stream
	for range n {
		streams = append(streams, testkit.OpenStream(t, testkit.Request(t, url, "alice-token")))
	}
	for _, s := range streams {
		s.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
	}
	if got := testutil.ToFloat64(notifyMetrics.StreamsOpen) - openBefore; got != n {
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
			"caddyhttp.(*Server).ServeHTTP", "gateway.(*Gateway).Serve", "(*connReader).backgroundRead")
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
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","n":1}`)
	for _, s := range streams {
		if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","n":1}` {
			t.Fatalf("got %q", ev.Data)
		}
	}
	streams[0].Expect(t, testkit.Frame{Kind: testkit.FrameComment, Comment: " ping"})

	for _, s := range streams {
		s.Close()
	}
	testkit.WaitFor(t, time.Second, "subscribers removed", func() bool { return openSubscribers() == 0 })
	testkit.WaitFor(t, time.Second, "streams_open back to its level", func() bool {
		return testutil.ToFloat64(notifyMetrics.StreamsOpen) == openBefore
	})
	testkit.WaitFor(t, time.Second, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseline })
}

var dateLine = regexp.MustCompile(`\r\nDate: ([^\r\n]+)\r\n`)

// The response head written after hijacking, byte for byte: the status line,
// every header set so far (an earlier header directive's, CORS), the
// stream's own, Date and Connection: close, no chunked encoding; then the
// retry field and the events as they come. Closing the socket ends the
// stream within a second.
func TestHijackedResponseHead(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
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

	testkit.WaitFor(t, 5*time.Second, "stream registered", func() bool { return openSubscribers() == 1 })
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","n":1}`)
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","n":2}`)
	wantBody := "data: {\"recipient_id\":\"alice\",\"n\":1}\n\ndata: {\"recipient_id\":\"alice\",\"n\":2}\n\n"
	body := make([]byte, len(wantBody))
	if _, err := io.ReadFull(br, body); err != nil || string(body) != wantBody {
		t.Fatalf("body %q, err %v; want %q", body, err, wantBody)
	}

	conn.Close()
	testkit.WaitFor(t, time.Second, "stream released after the client closed", func() bool { return openSubscribers() == 0 })
}

// With takeover off, an HTTP/1.1 stream stays in Caddy's hands: deferred
// header operations apply, the body is chunked on a keep-alive connection,
// and the request goroutine serves the stream; with takeover on (the
// default), the same config's stream goes out without the deferred header,
// on a connection that closes.
func TestTakeoverOff(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	header >X-Deferred yes
	notify /off {
		redis {redis}
		auth_url {auth}
		takeover off
	}
	notify /on {
		redis {redis}
		auth_url {auth}
	}`)
	for _, tc := range []struct {
		path     string
		deferred string
		chunked  bool
	}{{"/off", "yes", true}, {"/on", "", false}} {
		t.Run(tc.path[1:], func(t *testing.T) {
			keepAlive := &http.Client{Transport: &http.Transport{}}
			t.Cleanup(keepAlive.CloseIdleConnections)
			s := testkit.OpenStreamWith(t, keepAlive, testkit.Request(t, base+tc.path, "alice-token"))
			s.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
			resp := s.Resp
			chunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"
			if got := resp.Header.Get("X-Deferred"); got != tc.deferred || chunked != tc.chunked || resp.Close == tc.chunked {
				t.Errorf("X-Deferred %q, chunked %v, Connection: close %v; want %q, %v, %v",
					got, chunked, resp.Close, tc.deferred, tc.chunked, !tc.chunked)
			}
			serving, _ := goroutinesIn(regexp.MustCompile(`stream\.\(\*Stream\)\.serve`))
			if want := map[bool]int{true: 1, false: 0}[tc.chunked]; serving != want {
				t.Errorf("%d request goroutines serve the stream, want %d", serving, want)
			}
			rs.Publish(t, defaultChannel, `{"recipient_id":"alice","n":1}`)
			if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","n":1}` {
				t.Errorf("got %+v", ev)
			}
			s.Close()
			testkit.WaitFor(t, 2*time.Second, "stream released", func() bool { return openSubscribers() == 0 })
		})
	}
}

// The server ends a hijacked stream by closing the connection: a client
// reading to EOF sees a complete response.
func TestHijackedStreamEndsWithConnectionClose(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
		queue_size 1
	}`)
	s := testkit.OpenStream(t, testkit.Request(t, base+"/", "alice-token"))
	if s.Resp.ProtoMajor != 1 || !s.Resp.Close || len(s.Resp.TransferEncoding) != 0 || s.Resp.ContentLength != -1 {
		t.Fatalf("proto %d, close %v, transfer-encoding %v, content-length %d: want HTTP/1.x delimited by close",
			s.Resp.ProtoMajor, s.Resp.Close, s.Resp.TransferEncoding, s.Resp.ContentLength)
	}
	// Ending the stream closes the connection: the body ends cleanly.
	testkit.WaitFor(t, 5*time.Second, "stream registered", func() bool { return openSubscribers() == 1 })
	runningHandlers(t)[0].gateway.EndStreams()
	s.WaitEnded(t, 2*time.Second)
	if s.Err() != io.EOF {
		t.Errorf("body ended with %v, want EOF", s.Err())
	}
	testkit.WaitFor(t, time.Second, "stream released", func() bool { return openSubscribers() == 0 })
}
