package notify

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddyserver/caddy/v2"
)

// eachSubscriber calls fn for every stream registered in every live hub.
func eachSubscriber(fn func(*subscriber)) {
	hubs.Range(func(_, v any) bool {
		for _, hb := range v.(*hubSet).hubs {
			hb.mu.Lock()
			for _, ix := range hb.indexes {
				eachInIndex(ix, fn)
			}
			hb.mu.Unlock()
		}
		return true
	})
}

// eachInIndex calls fn for every stream in ix.
func eachInIndex(ix *index, fn func(*subscriber)) {
	for i := range ix.shards {
		ix.eachInShard(i, fn)
	}
}

// countStreams returns the number of streams in ix.
func countStreams(ix *index) int {
	n := 0
	eachInIndex(ix, func(*subscriber) { n++ })
	return n
}

// openSubscribers counts the streams registered in every live hub.
func openSubscribers() int {
	n := 0
	eachSubscriber(func(*subscriber) { n++ })
	return n
}

func liveHubs() int {
	n := 0
	hubs.Range(func(_, _ any) bool { n++; return true })
	return n
}

// warmUp opens and closes one stream, which starts Caddy's and the
// runtime's own long-lived goroutines, and returns the goroutine count and
// the streams_open gauge to compare later streams against.
func warmUp(t *testing.T, url, token string) (goroutines int, streamsOpen float64) {
	t.Helper()
	openStream(t, request(t, url, token)).close()
	waitFor(t, time.Second, "warm-up stream released", func() bool { return openSubscribers() == 0 })
	return runtime.NumGoroutine(), testutil.ToFloat64(metrics.streamsOpen)
}

func TestDisconnectReleasesEverything(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice"))
	base := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
		heartbeat 50ms
	}`)
	url := base + "/"

	baseline, openBefore := warmUp(t, url, "alice-token")

	var streams []*sseStream
	for range 20 {
		streams = append(streams, openStream(t, request(t, url, "alice-token")))
	}
	if n := openSubscribers(); n != 20 {
		t.Fatalf("%d subscribers registered, want 20", n)
	}
	if got := testutil.ToFloat64(metrics.streamsOpen) - openBefore; got != 20 {
		t.Fatalf("streams_open rose by %v, want 20", got)
	}
	// Heartbeats flow while the streams are open.
	streams[0].expect(t, sseEvent{kind: frameRetry, retry: "3000"}, sseEvent{kind: frameComment, comment: " ping"})
	for _, s := range streams {
		s.close()
	}
	waitFor(t, time.Second, "subscribers removed from the index", func() bool { return openSubscribers() == 0 })
	waitFor(t, time.Second, "streams_open back to its level", func() bool {
		return testutil.ToFloat64(metrics.streamsOpen) == openBefore
	})
	waitFor(t, time.Second, "stream goroutines gone", func() bool { return runtime.NumGoroutine() <= baseline })
	if rs.publish(t, DefaultChannel, `{"recipient_id":"alice"}`) != 1 {
		t.Error("the shared subscription should remain: one subscriber per process")
	}
}

func TestOneSubscriptionPerChannel(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice", "bob"))
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
	var streams []*sseStream
	for range 10 {
		streams = append(streams, openStream(t, request(t, base+"/a", "alice-token")))
	}
	b := openStream(t, request(t, base+"/b", "bob-token"))
	openStream(t, request(t, base+"/c", "bob-token"))

	c := rs.client()
	defer c.Close()
	numsub, err := c.PubSubNumSub(t.Context(), DefaultChannel, "other").Result()
	if err != nil {
		t.Fatal(err)
	}
	if numsub[DefaultChannel] != 1 || numsub["other"] != 1 {
		t.Errorf("PUBSUB NUMSUB = %v, want one subscription per channel", numsub)
	}
	clients, err := c.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := countLines(clients, "name=caddy-notify"); got != 2 {
		t.Errorf("%d Redis connections from the module, want 2 (one per channel):\n%s", got, clients)
	}
	rs.publish(t, DefaultChannel, `{"recipient_id":"alice","to":"bob","n":1}`)
	if ev := b.next(t, 5*time.Second); ev.data != `{"recipient_id":"alice","to":"bob","n":1}` {
		t.Errorf("/b got %q", ev.data)
	}
	for _, s := range streams {
		if ev := s.next(t, 5*time.Second); ev.data != `{"recipient_id":"alice","to":"bob","n":1}` {
			t.Errorf("/a got %q", ev.data)
		}
	}
}

func TestReloadEndsStreamsAndKeepsSubscription(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice"))
	cfg := &caddyConfig{redis: rs, auth: auth, vars: map[string]string{"heartbeat": "15s"}, routes: `
	notify {
		redis {redis}
		auth_url {auth}
		heartbeat {heartbeat}
	}`}
	url := cfg.load(t) + "/"
	old := openStream(t, request(t, url, "alice-token"))

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
	old.waitEnded(t, 2*time.Second)
	if liveHubs() != 1 {
		t.Errorf("%d hubs after reload, want 1 (the subscription is kept)", liveHubs())
	}
	s := openStream(t, request(t, url, "alice-token"))
	rs.publish(t, DefaultChannel, `{"recipient_id":"alice","after":"reload"}`)
	if ev := s.next(t, 5*time.Second); ev.data != `{"recipient_id":"alice","after":"reload"}` {
		t.Fatalf("got %q", ev.data)
	}

	// Changing the Redis settings replaces the hub: the old one is destroyed.
	cfg.redis = startRedis(t)
	if err := cfg.reload(); err != nil {
		t.Fatal(err)
	}
	s.waitEnded(t, 2*time.Second)
	waitFor(t, 2*time.Second, "old hub destroyed", func() bool { return liveHubs() == 1 })
	if n := rs.publish(t, DefaultChannel, `{}`); n != 0 {
		t.Errorf("old Redis still has %d subscribers", n)
	}
}

func TestStopEndsStreams(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice"))
	// Eternal grace period, as by default: the module must end its streams.
	cfg := &caddyConfig{redis: rs, auth: auth, eternalGrace: true, routes: `
	notify {
		redis {redis}
		auth_url {auth}
	}`}
	s := openStream(t, request(t, cfg.load(t)+"/", "alice-token"))
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
	s.waitEnded(t, time.Second)
	waitFor(t, time.Second, "hub destroyed", func() bool { return liveHubs() == 0 })
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
