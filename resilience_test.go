package notify

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/testkit"
)

func TestRedisDownAndBack(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
	}
	`)
	url := base + "/"
	s := testkit.OpenStream(t, testkit.Request(t, url, "alice-token"))
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","n":1}`)
	if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","n":1}` {
		t.Fatalf("got %q", ev.Data)
	}

	rs.Stop()
	testkit.WaitFor(t, 5*time.Second, "subscription marked down", func() bool {
		return !readersUp()
	})
	callsBefore := auth.Calls()
	resp, err := http.DefaultClient.Do(testkit.Request(t, url, "alice-token"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("while Redis is down: status %d, Retry-After %q; want 503 and 5",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if auth.Calls() != callsBefore {
		t.Error("auth API called while Redis is down")
	}
	select {
	case <-s.Done():
		t.Fatal("open stream closed while Redis is down")
	default:
	}

	rs.Start()
	// No client action: the open stream receives again once resubscribed.
	c := rs.Client()
	defer c.Close()
	testkit.WaitFor(t, 10*time.Second, "resubscription", func() bool {
		n, err := c.PubSubNumSub(t.Context(), defaultChannel).Result()
		return err == nil && n[defaultChannel] == 1
	})
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","n":2}`)
	if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","n":2}` {
		t.Fatalf("after restart got %q", ev.Data)
	}
	testkit.OpenStream(t, testkit.Request(t, url, "alice-token"))

	// A killed connection (CLIENT KILL) is re-established the same way.
	if err := c.Do(t.Context(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 10*time.Second, "resubscription after CLIENT KILL", func() bool {
		n, err := c.PubSubNumSub(t.Context(), defaultChannel).Result()
		return err == nil && n[defaultChannel] == 1
	})
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","n":3}`)
	if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","n":3}` {
		t.Fatalf("after CLIENT KILL got %q", ev.Data)
	}
}

func TestCaddyStartsWithRedisDown(t *testing.T) {
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	rs := testkit.NewRedis(t, testkit.FreePort(t)) // started below
	url := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
	}`) + "/"
	resp, err := http.DefaultClient.Do(testkit.Request(t, url, "alice-token"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	rs.Start()
	var s *testkit.Stream
	testkit.WaitFor(t, 10*time.Second, "stream accepted once Redis is up", func() bool {
		resp, err := testkit.StreamClient.Do(testkit.Request(t, url, "alice-token"))
		if err != nil {
			return false
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return false
		}
		resp.Body.Close()
		return true
	})
	s = testkit.OpenStream(t, testkit.Request(t, url, "alice-token"))
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice"}`)
	if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice"}` {
		t.Fatalf("got %q", ev.Data)
	}
}

func TestMalformedMessagesAreDropped(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		broadcast
	}`)
	metricsURL := base + "/metrics"
	s := testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token"))

	bad := map[message.Drop][]string{
		message.Malformed: {`not json`, `{"recipient_id":"alice"`, `["alice"]`, `"alice"`, `42`, `null`, ``,
			`{"recipient_id":"alice"} trailing`, "\xff\xfe"},
		message.NoRecipient: {`{}`, `{"recipient_id":null}`, `{"recipient_id":""}`, `{"recipient_id":[]}`,
			`{"recipient_id":[null]}`, `{"to":"alice"}`},
		message.InvalidRecipient: {`{"recipient_id":true}`, `{"recipient_id":{"id":"alice"}}`, `{"recipient_id":1.5}`,
			`{"recipient_id":["alice",true]}`, `{"recipient_id":[["alice"]]}`},
	}
	before := map[message.Drop]float64{}
	for reason := range bad {
		before[reason] = testkit.MetricValue(t, metricsURL, `caddy_notify_dropped_total{reason="`+string(reason)+`"}`)
	}
	var want []string
	n := 0
	for reason, payloads := range bad {
		for _, p := range payloads {
			rs.Publish(t, defaultChannel, p)
			n++
			good := fmt.Sprintf(`{"recipient_id":"alice","after":%d,"reason":%q}`, n, reason)
			rs.Publish(t, defaultChannel, good)
			want = append(want, good)
		}
	}
	rs.Publish(t, defaultChannel, `{"recipient_id":"*","end":1}`)
	got := s.Collect(t, `{"recipient_id":"*","end":1}`)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("received\n%q\nwant\n%q", got, want)
	}
	for reason, payloads := range bad {
		sample := `caddy_notify_dropped_total{reason="` + string(reason) + `"}`
		if d := testkit.MetricValue(t, metricsURL, sample) - before[reason]; d != float64(len(payloads)) {
			t.Errorf("%s rose by %v, want %d", sample, d, len(payloads))
		}
	}
	for _, sample := range []string{"caddy_notify_streams_open", "caddy_notify_messages_received_total",
		"caddy_notify_deliveries_total", `caddy_notify_redis_subscriptions{state="up"}`,
		`caddy_notify_stream_requests_total{outcome="ok"}`} {
		if testkit.MetricValue(t, metricsURL, sample) < 1 {
			t.Errorf("metric %s missing from the metrics endpoint", sample)
		}
	}
}

// TestSlowClientIsClosed opens a stream whose client never reads. Its queue
// overflows and it is closed, while the same user's other stream receives
// every event.
func TestSlowClientIsClosed(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		queue_size 8
		write_timeout 1s
	}`)
	dropsBefore := testkit.MetricValue(t, base+"/metrics", `caddy_notify_dropped_total{reason="slow_client"}`)

	// The slow client: a raw connection with a tiny receive buffer that is
	// never read.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer alice-token\r\n\r\n")
	testkit.WaitFor(t, 5*time.Second, "slow stream registered", func() bool { return openSubscribers() == 1 })

	fast := testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token"))
	big := strings.Repeat("x", 32<<10)
	var want []string
	for i := range 200 {
		m := fmt.Sprintf(`{"recipient_id":"alice","n":%d,"pad":%q}`, i, big)
		rs.Publish(t, defaultChannel, m)
		want = append(want, m)
		if i%8 == 7 {
			// Keep pace with the fast reader so only the slow one
			// falls behind.
			for _, w := range want[len(want)-8:] {
				if ev := fast.Next(t, 5*time.Second); ev.Data != w {
					t.Fatalf("fast stream got %.60q, want %.60q", ev.Data, w)
				}
			}
		}
	}
	testkit.WaitFor(t, 5*time.Second, "slow stream closed", func() bool { return openSubscribers() == 1 })
	if d := testkit.MetricValue(t, base+"/metrics", `caddy_notify_dropped_total{reason="slow_client"}`) - dropsBefore; d != 1 {
		t.Errorf("slow_client drops rose by %v, want 1", d)
	}
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","end":1}`)
	if ev := fast.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","end":1}` {
		t.Fatalf("fast stream after the slow one closed: %q", ev.Data)
	}
	// The slow client's handler is stuck in a write to a full socket; the
	// write timeout ends it, so the connection is released.
	testkit.WaitFor(t, 5*time.Second, "slow stream's handler returned", func() bool {
		return testkit.MetricValue(t, base+"/metrics", "caddy_notify_streams_open") == 1
	})
}
