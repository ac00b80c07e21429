package notify

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// TestStreamsOverHTTP2 multiplexes several streams of two users over one
// HTTP/2 (h2c) connection, and checks each gets its own events and that a
// stream reset releases its subscriber.
func TestStreamsOverHTTP2(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice", "bob"))
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
		write_timeout 300ms
	}`,
	}
	url := cfg.load(t) + "/"
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	open := func(token string) *testkit.Stream {
		resp, err := client.Do(testkit.Request(t, url, token))
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			t.Fatalf("got %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
		}
		s := testkit.ReadStream(resp)
		t.Cleanup(func() { s.Close(); <-s.Done() })
		return s
	}
	alice := []*testkit.Stream{open("alice-token"), open("alice-token"), open("alice-token")}
	bob := open("bob-token")
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","n":1}`)
	rs.Publish(t, defaultChannel, `{"recipient_id":"bob","n":2}`)
	for _, s := range alice {
		if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","n":1}` {
			t.Fatalf("alice got %q", ev.Data)
		}
	}
	if ev := bob.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"bob","n":2}` {
		t.Fatalf("bob got %q", ev.Data)
	}
	// Between writes, an HTTP/2 stream's only goroutine is its request's,
	// waiting in serve; no writer runs, and the request goroutine never
	// writes (the writes' depth would double its stack).
	writers := regexp.MustCompile(`stream\.\(\*Stream\)\.(start|resume)`)
	testkit.WaitFor(t, 2*time.Second, "writers gone between events", func() bool {
		n, _ := goroutinesIn(writers)
		return n == 0
	})
	waiting, writing := goroutinesIn(regexp.MustCompile(`stream\.\(\*Stream\)\.serve`), "(*rcWriter).writeFrames")
	if waiting != 4 || writing != 0 {
		t.Errorf("%d request goroutines waiting in serve (want 4), %d of all goroutines writing (want 0)", waiting, writing)
	}
	alice[0].Close() // RST_STREAM on the shared connection
	testkit.WaitFor(t, time.Second, "reset stream released", func() bool { return openSubscribers() == 3 })
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","n":3}`)
	if ev := alice[1].Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","n":3}` {
		t.Fatalf("remaining stream got %q", ev.Data)
	}
	// Streams stay open well past write_timeout after their last write:
	// the deadline covers writes only.
	time.Sleep(time.Second)
	rs.Publish(t, defaultChannel, `{"recipient_id":"bob","n":4}`)
	if ev := bob.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"bob","n":4}` {
		t.Fatalf("bob after an idle second got %q", ev.Data)
	}
}
