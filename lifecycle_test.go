package notify

import (
	"io"
	"net"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-notify/notify/internal/testkit"

	"github.com/caddyserver/caddy/v2"
)

// openSubscribers is the streams_open gauge: the streams registered and not
// yet ended, in every handler of the process.
func openSubscribers() int { return int(testutil.ToFloat64(notifyMetrics.StreamsOpen)) }

// liveHubs counts the hub sets in the process's pool.
func liveHubs() int { return hubSets.len() }

// warmUp opens and closes one stream, which starts Caddy's and the
// runtime's own long-lived goroutines, and returns the goroutine count and
// the streams_open gauge to compare later streams against.
func warmUp(t *testing.T, url, token string) (goroutines int, streamsOpen float64) {
	t.Helper()
	testkit.OpenStream(t, testkit.Request(t, url, token)).Close()
	testkit.WaitFor(t, time.Second, "warm-up stream released", func() bool { return openSubscribers() == 0 })
	return runtime.NumGoroutine(), testutil.ToFloat64(notifyMetrics.StreamsOpen)
}

func TestDisconnectReleasesEverything(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
		heartbeat 50ms
	}`)
	url := base + "/"

	baseline, openBefore := warmUp(t, url, "alice-token")

	var streams []*testkit.Stream
	for range 20 {
		streams = append(streams, testkit.OpenStream(t, testkit.Request(t, url, "alice-token")))
	}
	if n := openSubscribers(); n != 20 {
		t.Fatalf("%d subscribers registered, want 20", n)
	}
	if got := testutil.ToFloat64(notifyMetrics.StreamsOpen) - openBefore; got != 20 {
		t.Fatalf("streams_open rose by %v, want 20", got)
	}
	// Heartbeats flow while the streams are open.
	streams[0].Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"}, testkit.Frame{Kind: testkit.FrameComment, Comment: " ping"})
	for _, s := range streams {
		s.Close()
	}
	testkit.WaitFor(t, time.Second, "subscribers removed from the index", func() bool { return openSubscribers() == 0 })
	testkit.WaitFor(t, time.Second, "streams_open back to its level", func() bool {
		return testutil.ToFloat64(notifyMetrics.StreamsOpen) == openBefore
	})
	testkit.WaitFor(t, time.Second, "stream goroutines gone", func() bool { return runtime.NumGoroutine() <= baseline })
	if rs.Publish(t, defaultChannel, `{"recipient_id":"alice"}`) != 1 {
		t.Error("the shared subscription should remain: one subscriber per process")
	}
}

func TestOneSubscriptionPerChannel(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice", "bob"))
	// Two handlers on one channel (different recipient fields), one on another.
	base := serve(t, rs, auth, `
	notify /a {
		redis {redis}
		auth_url {auth}
	}
	notify /b {
		redis {redis}
		auth_url {auth}
		recipient_field to
	}
	notify /c {
		redis {redis}
		auth_url {auth}
		channel other
	}`)
	var streams []*testkit.Stream
	for range 10 {
		streams = append(streams, testkit.OpenStream(t, testkit.Request(t, base+"/a", "alice-token")))
	}
	b := testkit.OpenStream(t, testkit.Request(t, base+"/b", "bob-token"))
	testkit.OpenStream(t, testkit.Request(t, base+"/c", "bob-token"))

	c := rs.Client()
	defer c.Close()
	numsub, err := c.PubSubNumSub(t.Context(), defaultChannel, "other").Result()
	if err != nil {
		t.Fatal(err)
	}
	if numsub[defaultChannel] != 1 || numsub["other"] != 1 {
		t.Errorf("PUBSUB NUMSUB = %v, want one subscription per channel", numsub)
	}
	clients, err := c.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := countLines(clients, "name=caddy-notify"); got != 2 {
		t.Errorf("%d Redis connections from the module, want 2 (one per channel):\n%s", got, clients)
	}
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","to":"bob","n":1}`)
	if ev := b.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","to":"bob","n":1}` {
		t.Errorf("/b got %q", ev.Data)
	}
	for _, s := range streams {
		if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","to":"bob","n":1}` {
			t.Errorf("/a got %q", ev.Data)
		}
	}
}

// TestReloadKeepsTheSubscription: a reload that changes a delivery setting
// (heartbeat) keeps the stream and the one subscription; one that changes
// the Redis settings replaces the hub, once its stream, drained, has ended.
func TestReloadKeepsTheSubscription(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	cfg := &caddyConfig{redis: rs, auth: auth, vars: map[string]string{"heartbeat": "15s"}, routes: `
	notify {
		redis {redis}
		auth_url {auth}
		heartbeat {heartbeat}
		reload_drain 0
	}`}
	url := cfg.load(t) + "/"
	s := testkit.OpenStream(t, testkit.Request(t, url, "alice-token"))

	cfg.vars["heartbeat"] = "20s"
	reloaded := make(chan error, 1)
	go func() { reloaded <- cfg.reload() }()
	select {
	case err := <-reloaded:
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reload hangs on an open stream")
	}
	if liveHubs() != 1 {
		t.Errorf("%d hubs after reload, want 1 (the subscription is kept)", liveHubs())
	}
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","after":"reload"}`)
	if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","after":"reload"}` {
		t.Fatalf("got %q", ev.Data)
	}

	// Changing the Redis settings replaces the hub: the old one is destroyed.
	cfg.redis = testkit.StartRedis(t)
	if err := cfg.reload(); err != nil {
		t.Fatal(err)
	}
	s.WaitEnded(t, 2*time.Second)
	testkit.WaitFor(t, 2*time.Second, "old hub destroyed", func() bool { return liveHubs() == 1 })
	if n := rs.Publish(t, defaultChannel, `{}`); n != 0 {
		t.Errorf("old Redis still has %d subscribers", n)
	}
}

func TestStopEndsStreams(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	// Eternal grace period, as by default: the module must end its streams.
	cfg := &caddyConfig{redis: rs, auth: auth, eternalGrace: true, routes: `
	notify {
		redis {redis}
		auth_url {auth}
	}`}
	s := testkit.OpenStream(t, testkit.Request(t, cfg.load(t)+"/", "alice-token"))
	stopped := make(chan error, 1)
	go func() { stopped <- caddy.Stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("caddy.Stop hangs on an open stream")
	}
	s.WaitEnded(t, time.Second)
	testkit.WaitFor(t, time.Second, "hub destroyed", func() bool { return liveHubs() == 0 })
}

func countLines(s, substr string) int {
	n := 0
	for line := range strings.Lines(s) {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// A drain cuts off, a second after its window, a taken-over stream whose
// writer is blocked on a client that stopped reading: no goroutine waits
// for it, the stream Set closes the connection under the writer.
func TestDrainCutsOffABlockedTakenOverWrite(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	cfg := &caddyConfig{redis: rs, auth: auth, vars: map[string]string{"channel": defaultChannel}, routes: `
	notify {
		redis {redis}
		auth_url {auth}
		channel {channel}
		reload_drain 0
		max_message_size 2MiB
		queue_bytes 64MiB
		queue_size 1000
		write_timeout 1h
	}`}
	base := cfg.load(t)
	openBefore := testutil.ToFloat64(notifyMetrics.StreamsOpen)

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer alice-token\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "stream registered", func() bool { return openSubscribers() == 1 })
	// More than the socket buffers hold: the writer blocks in a write.
	msg := bigMessage("alice", 0, 1_000_000)
	for range 24 {
		rs.Publish(t, defaultChannel, msg)
	}
	testkit.WaitFor(t, 5*time.Second, "a writer blocked on the client", func() bool {
		n, _ := goroutinesIn(regexp.MustCompile(`stream\.\(\*Stream\)\.(start|resume)`))
		return n == 1
	})
	time.Sleep(200 * time.Millisecond) // it stays blocked

	cfg.vars["channel"] = "other" // the reload drains the stream
	if err := cfg.reload(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 2*time.Second, "the blocked stream ended", func() bool {
		return testutil.ToFloat64(notifyMetrics.StreamsOpen) == openBefore
	})
}
