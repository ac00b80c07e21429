package notify

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// documentedBodyTimeout is body_timeout's default, as its doc comment
// gives it.
const documentedBodyTimeout = 10 * time.Second

// TestPublishBodyTimeout keeps 200 clients sending their bodies one byte a
// second, half chunked and half with a Content-Length: at body_timeout
// (10s by default) each gets 408 with Connection: close, and the server
// holds none of their connections (nor the goroutines serving them). A
// publisher that sends its body at once is served meanwhile.
func TestPublishBodyTimeout(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify_publish /publish {
		redis {redis}
	}`)
	const clients = 200
	start := time.Now()
	var wg sync.WaitGroup
	results := make(chan string, clients)
	for i := range clients {
		c := dialRaw(t, base)
		chunked := i%2 == 0
		if chunked {
			c.postHead(t, "/publish", "Transfer-Encoding: chunked")
		} else {
			c.postHead(t, "/publish", "Content-Length: 1000")
		}
		wg.Go(func() {
			results <- trickle(c, chunked, documentedBodyTimeout+10*time.Second)
		})
	}
	// Meanwhile, a publisher that sends its body at once is served.
	prompt := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	status, body, _ := post(t, prompt, base+"/publish", "application/json", strings.NewReader(`{"recipient_id":"alice"}`))
	if status != http.StatusAccepted {
		t.Errorf("a prompt publisher got %d %s", status, body)
	}
	wg.Wait()
	close(results)
	counts := map[string]int{}
	for r := range results {
		counts[r]++
	}
	if counts["408"] != clients {
		t.Errorf("answers: %v, want 408 for all %d", counts, clients)
	}
	took := time.Since(start)
	testkit.WaitFor(t, 2*time.Second, "the server to let go of the slow clients' connections", func() bool { return serverConns() == 0 })
	if took < documentedBodyTimeout {
		t.Errorf("answered after %v, before body_timeout", took)
	}
	t.Logf("all answered and closed %v after the first byte", took.Round(100*time.Millisecond))
}

// trickle sends a body one space a second until the server answers or
// gives up, then checks the answer: it returns "408" when the server
// answered 408 with Connection: close and then closed the connection,
// otherwise what happened instead.
func trickle(c *rawConn, chunked bool, giveUp time.Duration) string {
	answered := make(chan string, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(giveUp))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			answered <- "no answer: " + errKind(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if !resp.Close {
			answered <- fmt.Sprintf("%d without Connection: close", resp.StatusCode)
			return
		}
		if rest, err := io.ReadAll(c.br); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || len(rest) > 0 {
			answered <- fmt.Sprintf("%d, then not closed: %q %s", resp.StatusCode, rest, errKind(err))
			return
		}
		answered <- fmt.Sprint(resp.StatusCode)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case got := <-answered:
			return got
		case <-tick.C:
			b := " "
			if chunked {
				b = "1\r\n \r\n"
			}
			// A failed write is the server closing: the answer says why.
			_, _ = io.WriteString(c, b)
		}
	}
}

// errKind names a client's read error without its addresses, so that
// equal failures of many clients count as one kind.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	default:
		return fmt.Sprintf("%T", err)
	}
}
