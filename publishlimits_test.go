package notify

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// rawConn is an HTTP/1.1 client connection written by hand: what a
// client that declares one thing and sends another looks like.
type rawConn struct {
	net.Conn
	br   *bufio.Reader
	host string
}

// dialRaw connects to the site at base (http://host:port).
func dialRaw(t testing.TB, base string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, br: bufio.NewReader(c), host: strings.TrimPrefix(base, "http://")}
}

// postHead writes the head of a POST of JSON to path, with the extra
// header lines given (each without its CRLF).
func (c *rawConn) postHead(t testing.TB, path string, extra ...string) {
	t.Helper()
	head := "POST " + path + " HTTP/1.1\r\nHost: " + c.host + "\r\nContent-Type: application/json\r\n"
	for _, h := range extra {
		head += h + "\r\n"
	}
	if _, err := io.WriteString(c, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
}

// answer reads the next response, which must come within d, and its body.
func (c *rawConn) answer(t testing.TB, d time.Duration) (*http.Response, string) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("no answer within %v: %v", d, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	return resp, string(body)
}

// closedWithin checks that the server closes the connection within d,
// sending nothing more: an EOF, or a reset when bytes the client sent
// were left unread.
func (c *rawConn) closedWithin(t testing.TB, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	rest, err := io.ReadAll(c.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open after %v", d)
	}
	if len(rest) > 0 {
		t.Fatalf("the server sent %q after its answer", rest)
	}
}

// serverConns counts the connections the in-process Caddy is serving over
// HTTP/1.1: one net/http goroutine each.
func serverConns() int {
	var b strings.Builder
	_ = pprofGoroutines(&b)
	n := 0
	for _, block := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(block, "net/http.(*conn).serve") {
			// "N @ 0x..." heads a block of N identical goroutines.
			var count int
			if _, err := fmt.Sscanf(block, "%d @", &count); err == nil {
				n += count
			}
		}
	}
	return n
}

// documentedMaxBody is max_body's default, as its doc comment gives it.
const documentedMaxBody = 64 << 20

// pprofGoroutines writes the stacks of the process's goroutines, those
// alike counted together.
func pprofGoroutines(w io.Writer) error { return pprof.Lookup("goroutine").WriteTo(w, 1) }

// TestPublishRefusesEarly sends notify_publish bodies whose declared
// length is over max_body (64 MiB by default), with and without Expect:
// 100-continue, sending none or one byte of them: each gets 413 with
// Connection: close at once, without a 100 Continue and without the
// server waiting for any of the body, and the connection closes.
func TestPublishRefusesEarly(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify_publish /publish {
		redis {redis}
	}`)
	for _, tt := range []struct {
		name   string
		header []string
		body   string
	}{
		{"2e9 declared, none sent", []string{"Content-Length: 2000000000"}, ""},
		{"2e9 declared, Expect: 100-continue", []string{"Content-Length: 2000000000", "Expect: 100-continue"}, ""},
		{"1e8 declared, one byte sent", []string{"Content-Length: 100000000"}, "["},
		{"1e8 declared, Expect: 100-continue, one byte sent", []string{"Content-Length: 100000000", "Expect: 100-continue"}, "["},
		{"max_body+1 declared", []string{fmt.Sprintf("Content-Length: %d", documentedMaxBody+1)}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, base)
			c.postHead(t, "/publish", tt.header...)
			if _, err := io.WriteString(c, tt.body); err != nil {
				t.Fatal(err)
			}
			// The first answer is the refusal: no 100 Continue asked for
			// a body that is refused whatever it holds.
			resp, body := c.answer(t, time.Second)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || body != "{\"error\":\"Message too large.\"}\n" {
				t.Fatalf("answer %d %q, want 413 Message too large.", resp.StatusCode, body)
			}
			if !resp.Close {
				t.Errorf("no Connection: close (headers %v)", resp.Header)
			}
			c.closedWithin(t, time.Second)
		})
	}
	testkit.WaitFor(t, 2*time.Second, "the server to let go of every connection", func() bool { return serverConns() == 0 })
}

// TestPublishCutsOffChunkedBodies streams a chunked body of 100 valid
// messages of 1 MB each: past max_body (64 MiB by default) it gets 413
// with Connection: close, while the client is still sending, long before
// the end of the body.
func TestPublishCutsOffChunkedBodies(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify_publish /publish {
		redis {redis}
		# Reading 64 MB takes seconds under the race detector.
		body_timeout 2m
	}`)
	body := newBatchBody(100, 1_000_000)
	req := newRequest(t, http.MethodPost, base+"/publish", "application/json", struct{ io.Reader }{body})
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatalf("%v (after sending %d bytes)", err, body.served.Load())
	}
	defer resp.Body.Close()
	sent := body.served.Load()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Fatalf("status %d, Connection: close %t; want 413 and close", resp.StatusCode, resp.Close)
	}
	// What the client sent beyond max_body sat in socket buffers.
	if sent > documentedMaxBody+24<<20 {
		t.Errorf("the client sent %d MiB of %d before the answer", sent>>20, body.size>>20)
	}
	t.Logf("413 after the client sent %.1f MiB", float64(sent)/(1<<20))
}

// TestPublishPipelined sends requests back to back on one HTTP/1.1
// connection: after a request whose body was read to its end (accepted,
// or refused for what it held) the next one is served; after one refused
// with its body unread, the connection closes, and what followed is not
// taken for a request.
func TestPublishPipelined(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify_publish /publish {
		redis {redis}
	}`)
	ok := `{"recipient_id":"alice"}`
	request := func(contentType, body string) string {
		return fmt.Sprintf("POST /publish HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
			strings.TrimPrefix(base, "http://"), contentType, len(body), body)
	}
	c := dialRaw(t, base)
	if _, err := io.WriteString(c, request("application/json", ok)+request("application/json", "{")+
		request("application/json", "["+ok+","+ok+"]")+request("text/plain", ok)+request("application/json", ok)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		status int
		close  bool
	}{{202, false}, {400, false}, {202, false}, {415, true}} {
		resp, body := c.answer(t, 5*time.Second)
		if resp.StatusCode != want.status || resp.Close != want.close {
			t.Fatalf("got %d %q (close %t), want %d (close %t)", resp.StatusCode, body, resp.Close, want.status, want.close)
		}
	}
	c.closedWithin(t, 2*time.Second)
}

// TestPublishBodiesThatStop has clients give up halfway through a body:
// one that closes its side gets 400 at once, one that resets the
// connection leaves nothing behind; and a client that asks for 100
// Continue gets it, then its answer.
func TestPublishBodiesThatStop(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify_publish /publish {
		redis {redis}
	}`)
	for _, tt := range []struct {
		name   string
		header string
		body   string
	}{
		{"Content-Length", "Content-Length: 1000", `[{"recipient_id":"alice"},{"reci`},
		{"chunked", "Transfer-Encoding: chunked", "8\r\n[{\"recipi\r\n"},
	} {
		t.Run(tt.name+", half-closed", func(t *testing.T) {
			c := dialRaw(t, base)
			c.postHead(t, "/publish", tt.header)
			if _, err := io.WriteString(c, tt.body); err != nil {
				t.Fatal(err)
			}
			_ = c.Conn.(*net.TCPConn).CloseWrite()
			if resp, body := c.answer(t, time.Second); resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("answer %d %q, want 400", resp.StatusCode, body)
			}
			c.closedWithin(t, time.Second)
		})
		t.Run(tt.name+", reset", func(t *testing.T) {
			c := dialRaw(t, base)
			c.postHead(t, "/publish", tt.header)
			if _, err := io.WriteString(c, tt.body); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // the handler is reading
			_ = c.Conn.(*net.TCPConn).SetLinger(0)
			c.Close()
			testkit.WaitFor(t, 2*time.Second, "the server to let go of the connection", func() bool { return serverConns() == 0 })
		})
	}
	t.Run("Expect: 100-continue", func(t *testing.T) {
		ok := `{"recipient_id":"alice"}`
		c := dialRaw(t, base)
		c.postHead(t, "/publish", fmt.Sprintf("Content-Length: %d", len(ok)), "Expect: 100-continue")
		if resp, _ := c.answer(t, time.Second); resp.StatusCode != http.StatusContinue {
			t.Fatalf("answer %d, want 100", resp.StatusCode)
		}
		if _, err := io.WriteString(c, ok); err != nil {
			t.Fatal(err)
		}
		if resp, body := c.answer(t, 5*time.Second); resp.StatusCode != http.StatusAccepted || resp.Close {
			t.Fatalf("answer %d %q (close %t), want 202 on a connection kept", resp.StatusCode, body, resp.Close)
		}
	})
}

// TestPublishBehindRequestBody puts Caddy's request_body max_size in front
// of notify_publish: a body past it gets 413 too.
func TestPublishBehindRequestBody(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	route /publish {
		request_body {
			max_size 100
		}
		notify_publish {
			redis {redis}
		}
	}`)
	ok := `{"recipient_id":"alice"}`
	body := "[" + strings.Repeat(ok+",", 5) + ok + "]"
	req := newRequest(t, http.MethodPost, base+"/publish", "application/json", struct{ io.Reader }{strings.NewReader(body)})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := jsonBody(t, resp.Body)["error"]; resp.StatusCode != http.StatusRequestEntityTooLarge || got != errMsgTooLarge {
		t.Fatalf("%d %q, want 413 %q", resp.StatusCode, got, errMsgTooLarge)
	}
}
