package notify

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/testkit"
)

const testStream = "events"

// streamSetup runs Caddy with one stream-mode handler at /events, with
// options (one per line) added to its block.
func streamSetup(t *testing.T, rs *testkit.Redis, options ...string) *caddyConfig {
	t.Helper()
	routes := `
	metrics /metrics
	notify /events {
		redis {redis}
		stream {stream}
		auth_url {auth}`
	for _, o := range options {
		routes += "\n\t\t" + o
	}
	cfg := &caddyConfig{
		redis:  rs,
		auth:   testkit.StartAuthAPI(t, testkit.Users("u1", "u2", "u3", "alice", "bob")),
		vars:   map[string]string{"stream": testStream},
		routes: routes + "\n\t}",
	}
	cfg.load(t)
	return cfg
}

// xadd appends a message to the test stream and returns its entry ID.
func xadd(t testing.TB, c *redis.Client, msg string) string {
	t.Helper()
	id, err := c.XAdd(t.Context(), &redis.XAddArgs{Stream: testStream, Values: []any{"data", msg}}).Result()
	if err != nil {
		t.Fatalf("XADD: %v", err)
	}
	return id
}

// waitReaderAt waits until the stream reader behind url has read the entry
// id: a new stream starts at the last entry read, which its position frame
// tells.
func waitReaderAt(t testing.TB, url, token, id string) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, "the stream reader at "+id, func() bool {
		resp, err := testkit.StreamClient.Do(testkit.Request(t, url, token))
		if err != nil || resp.StatusCode != http.StatusOK {
			if err == nil {
				resp.Body.Close()
			}
			return false
		}
		s := testkit.ReadStream(resp)
		defer s.Close()
		for {
			switch f := s.NextFrame(t, 5*time.Second); f.Kind {
			case testkit.FramePosition:
				return f.ID == id
			case testkit.FrameRetry:
			default:
				return false
			}
		}
	})
}

// numbered is a message of a numbered sequence for one user.
type numbered struct {
	User string `json:"recipient_id"`
	N    int    `json:"n"`
}

func numberedMsg(user string, n int) string {
	return fmt.Sprintf(`{"recipient_id":%q,"n":%d}`, user, n)
}

// sequenceClient follows one user's stream across reconnections and checks
// that it sees 1, 2, 3, ... exactly once, in order, and nothing of anyone
// else's.
type sequenceClient struct {
	t      *testing.T
	url    string
	user   string
	lastID string
	next   int // the number expected next
	s      *testkit.Stream

	reconnects int // streams the server ended
}

func newSequenceClient(t *testing.T, url, user string) *sequenceClient {
	c := &sequenceClient{t: t, url: url, user: user, next: 1}
	c.connect()
	return c
}

func (c *sequenceClient) connect() {
	c.t.Helper()
	req := testkit.Request(c.t, c.url, c.user+"-token")
	if c.lastID != "" {
		req.Header.Set("Last-Event-ID", c.lastID)
	}
	c.s = testkit.OpenStream(c.t, req)
}

func (c *sequenceClient) reconnect() {
	c.t.Helper()
	c.s.Close()
	<-c.s.Done()
	c.connect()
}

// readUntil reads events until it has seen number n. When the server ends
// the stream (a slow client closed, a reload), it reconnects with its last
// ID, as EventSource does.
func (c *sequenceClient) readUntil(n int) {
	c.t.Helper()
	for c.next <= n {
		switch ev := c.s.NextFrame(c.t, 10*time.Second); ev.Kind {
		case testkit.FrameEnd:
			c.reconnects++
			c.connect()
		case testkit.FramePosition:
			c.lastID = ev.ID // as EventSource does
		case testkit.FrameEvent:
			c.check(ev)
		}
	}
}

func (c *sequenceClient) check(ev testkit.Frame) {
	c.t.Helper()
	var m numbered
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
		c.t.Fatalf("%s: event %q: %v", c.user, ev.Data, err)
	}
	if m.User != c.user {
		c.t.Fatalf("%s received %s's message %d: %+v", c.user, m.User, m.N, ev)
	}
	if m.N != c.next {
		c.t.Fatalf("%s received %d, want %d (a gap or a duplicate)", c.user, m.N, c.next)
	}
	if ev.ID == "" {
		c.t.Fatalf("%s: event without id", c.user)
	}
	c.next++
	c.lastID = ev.ID
}

func TestStreamDeliveryCarriesEntryIDs(t *testing.T) {
	rs := testkit.StartRedis(t)
	base := streamSetup(t, rs).base()
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	s := testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token"))
	malformedBefore := testkit.MetricValue(t, base+"/metrics", `caddy_notify_dropped_total{reason="malformed"}`)
	id1 := xadd(t, c, `{"recipient_id":"alice","n":1}`)
	xadd(t, c, `{"recipient_id":"bob","n":2}`)
	xadd(t, c, `not json`)
	if err := c.XAdd(t.Context(), &redis.XAddArgs{Stream: testStream, Values: []any{"other", `{"recipient_id":"alice"}`}}).Err(); err != nil {
		t.Fatal(err)
	}
	id3 := xadd(t, c, "{\"recipient_id\":\"alice\",\n\"n\":3}")
	for _, want := range []testkit.Frame{{ID: id1, Data: `{"recipient_id":"alice","n":1}`}, {ID: id3, Data: "{\"recipient_id\":\"alice\",\n\"n\":3}"}} {
		if ev := s.Next(t, 5*time.Second); ev.ID != want.ID || ev.Data != want.Data {
			t.Fatalf("got %+v, want %+v", ev, want)
		}
	}
	if d := testkit.MetricValue(t, base+"/metrics", `caddy_notify_dropped_total{reason="malformed"}`) - malformedBefore; d != 2 {
		t.Errorf("malformed drops %v, want 2 (bad JSON, no data field)", d)
	}
}

func TestStreamResume(t *testing.T) {
	rs := testkit.StartRedis(t)
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	// A window of 20 entries: resumes further back go to Redis.
	base := streamSetup(t, rs, "history_entries 20").base()
	url := base + "/events"
	clients := map[string]*sequenceClient{}
	for _, u := range []string{"u1", "u2", "u3"} {
		clients[u] = newSequenceClient(t, url, u)
	}
	sent := map[string]int{}
	publish := func(rounds int) {
		for range rounds {
			for _, u := range []string{"u1", "u2", "u3"} {
				sent[u]++
				xadd(t, c, numberedMsg(u, sent[u]))
			}
		}
	}
	publish(3)
	for u, cl := range clients {
		cl.readUntil(sent[u])
	}

	t.Run("Last-Event-ID from memory", func(t *testing.T) {
		clients["u1"].s.Close()
		publish(4) // 12 entries: inside the window
		clients["u1"].reconnect()
		for u, cl := range clients {
			cl.readUntil(sent[u])
		}
	})
	t.Run("Last-Event-ID older than the window", func(t *testing.T) {
		before := testkit.MetricValue(t, base+"/metrics", `caddy_notify_replayed_events_total{source="redis"}`)
		clients["u2"].s.Close()
		publish(30) // 90 entries: the window holds 20
		clients["u2"].reconnect()
		for u, cl := range clients {
			cl.readUntil(sent[u])
		}
		if d := testkit.MetricValue(t, base+"/metrics", `caddy_notify_replayed_events_total{source="redis"}`) - before; d < 20 {
			t.Errorf("replayed from redis rose by %v, want most of u2's 30", d)
		}
	})
	t.Run("last_event_id query on a new stream", func(t *testing.T) {
		cl := clients["u3"]
		cl.s.Close()
		publish(2)
		cl.s = testkit.OpenStream(t, testkit.Request(t, url+"?last_event_id="+cl.lastID, "u3-token"))
		cl.readUntil(sent["u3"])
	})
	t.Run("header wins over query", func(t *testing.T) {
		cl := clients["u3"]
		stale := "0-1"
		cl.s.Close()
		publish(1)
		req := testkit.Request(t, url+"?last_event_id="+stale, "u3-token")
		req.Header.Set("Last-Event-ID", cl.lastID)
		cl.s = testkit.OpenStream(t, req)
		cl.readUntil(sent["u3"])
	})
}

func TestStreamResumeEdgeCases(t *testing.T) {
	rs := testkit.StartRedis(t)
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	// Heartbeats off: a stream sends exactly its retry field, its
	// preamble and its live events.
	base := streamSetup(t, rs, "history_entries 5", "replay_limit 4", "heartbeat 0").base()
	url := base + "/events"
	var ids []string
	for i := 1; i <= 30; i++ {
		ids = append(ids, xadd(t, c, numberedMsg("alice", i)))
	}
	// Let the reader see them all.
	waitReaderAt(t, url, "alice-token", ids[len(ids)-1])

	open := func(t *testing.T, lastID string) *testkit.Stream {
		t.Helper()
		req := testkit.Request(t, url, "alice-token")
		req.Header.Set("Last-Event-ID", lastID)
		s := testkit.OpenStream(t, req)
		s.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
		return s
	}
	msg := func(n int) testkit.Frame {
		return testkit.Frame{Kind: testkit.FrameEvent, ID: ids[n-1], Data: numberedMsg("alice", n)}
	}
	reset := func(reason, id string) testkit.Frame {
		return testkit.Frame{Kind: testkit.FrameEvent, Name: "reset", ID: id, Data: `{"reason":"` + reason + `"}`}
	}

	t.Run("replay limit", func(t *testing.T) {
		s := open(t, ids[9]) // 20 missed, limit 4
		s.Expect(t, reset("replay_limit", ""), msg(27), msg(28), msg(29), msg(30))
	})
	t.Run("within the limit, from redis", func(t *testing.T) {
		s := open(t, ids[26]) // 3 missed, older than the 5-entry window? no: 27..30 are 4 entries
		s.Expect(t, msg(28), msg(29), msg(30))
	})
	t.Run("id from the future", func(t *testing.T) {
		s := open(t, "99999999999999-0")
		s.Expect(t, reset("unknown_last_event_id", ids[len(ids)-1]))
		ids = append(ids, xadd(t, c, numberedMsg("alice", 31)))
		s.Expect(t, msg(31))
	})
	t.Run("trimmed history", func(t *testing.T) {
		if err := c.XTrimMaxLen(t.Context(), testStream, 3).Err(); err != nil {
			t.Fatal(err)
		}
		s := open(t, ids[2]) // 4..31 missed; only 29..31 retained
		// The window still held 27..31, but 27 and 28 are gone from
		// Redis: they are not replayed.
		s.Expect(t, reset("history_truncated", ""), msg(29), msg(30), msg(31))
	})
}

// TestStreamTrimmedBeyondWindow resumes from an ID whose successors were
// trimmed from Redis and evicted from the window.
func TestStreamTrimmedBeyondWindow(t *testing.T) {
	rs := testkit.StartRedis(t)
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	base := streamSetup(t, rs, "history_entries 3", "heartbeat 0").base()
	var ids []string
	for i := 1; i <= 20; i++ {
		ids = append(ids, xadd(t, c, numberedMsg("bob", i)))
	}
	if err := c.XTrimMaxLen(t.Context(), testStream, 10).Err(); err != nil { // keeps 11..20
		t.Fatal(err)
	}
	testkit.OpenStream(t, testkit.Request(t, base+"/events", "bob-token")) // reader is up
	req := testkit.Request(t, base+"/events", "bob-token")
	req.Header.Set("Last-Event-ID", ids[4]) // 6..10 are gone
	s := testkit.OpenStream(t, req)
	want := []testkit.Frame{
		{Kind: testkit.FrameRetry, Retry: "3000"},
		{Kind: testkit.FrameEvent, Name: "reset", Data: `{"reason":"history_truncated"}`},
	}
	for i := 11; i <= 20; i++ {
		want = append(want, testkit.Frame{Kind: testkit.FrameEvent, ID: ids[i-1], Data: numberedMsg("bob", i)})
	}
	s.Expect(t, want...)
}

// TestStreamHistoryToLiveUnderLoad publishes continuously for two users
// while one client keeps disconnecting and resuming: every number must
// arrive exactly once, in order. A replay-then-subscribe implementation
// loses or repeats entries published between its two steps.
func TestStreamHistoryToLiveUnderLoad(t *testing.T) {
	rs := testkit.StartRedis(t)
	base := streamSetup(t, rs, "history_entries 200", "replay_limit 10000").base()
	url := base + "/events"
	alice := newSequenceClient(t, url, "alice")
	bob := newSequenceClient(t, url, "bob")

	const total = 3000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := rs.Client()
		defer c.Close()
		pipe := c.Pipeline()
		for i := 1; i <= total; i++ {
			for _, u := range []string{"alice", "bob"} {
				pipe.XAdd(t.Context(), &redis.XAddArgs{Stream: testStream, Values: []any{"data", numberedMsg(u, i)}})
			}
			if i%10 == 0 {
				if _, err := pipe.Exec(t.Context()); err != nil {
					t.Errorf("XADD: %v", err)
					return
				}
			}
		}
	}()
	t.Cleanup(wg.Wait)
	// alice reconnects every 25 events, sometimes after falling behind the
	// window; bob reads continuously.
	for alice.next <= total {
		target := min(alice.next+24, total)
		alice.readUntil(target)
		if target < total {
			alice.reconnect()
		}
	}
	bob.readUntil(total)
	wg.Wait()
}

func TestStreamSurvivesRedisFailures(t *testing.T) {
	rs := testkit.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	cfg := streamSetup(t, rs)
	url := cfg.base() + "/events"
	clients := []*sequenceClient{newSequenceClient(t, url, "u1"), newSequenceClient(t, url, "u2")}
	sent := map[string]int{}
	publish := func(c *redis.Client, n int) {
		for range n {
			for _, u := range []string{"u1", "u2"} {
				sent[u]++
				xadd(t, c, numberedMsg(u, sent[u]))
			}
		}
	}
	readAll := func() {
		for _, cl := range clients {
			cl.readUntil(sent[cl.user])
		}
	}
	publish(c, 5)
	readAll()

	t.Run("reader connection killed", func(t *testing.T) {
		killed, err := c.ClientKillByFilter(t.Context(), "TYPE", "normal", "SKIPME", "yes").Result()
		if err != nil || killed == 0 {
			t.Fatalf("CLIENT KILL: %d, %v", killed, err)
		}
		publish(c, 5)
		readAll()
	})
	t.Run("redis restarted with AOF", func(t *testing.T) {
		rs.Stop()
		rs.Start()
		c2 := rs.Client()
		defer c2.Close()
		publish(c2, 5)
		readAll()
	})
	t.Run("config reload", func(t *testing.T) {
		// Same config, reloaded while events keep coming: the streams
		// are kept, and miss nothing.
		publish(c, 3)
		if err := cfg.reload(); err != nil {
			t.Fatal(err)
		}
		publish(c, 3)
		readAll()
	})
}

// TestIndexAttachedToARunningStream adds, by a reload, a handler with
// another recipient field to a stream whose entries are already in memory:
// its history is rebuilt from the window, so it resumes from memory.
func TestIndexAttachedToARunningStream(t *testing.T) {
	rs := testkit.StartRedis(t)
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	cfg := streamSetup(t, rs)
	base := cfg.base()
	testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token")) // the reader is up
	var ids []string
	for i := 1; i <= 5; i++ {
		ids = append(ids, xadd(t, c, fmt.Sprintf(`{"recipient_id":"alice","to":"bob","n":%d}`, i)))
	}
	waitReaderAt(t, base+"/events", "alice-token", ids[len(ids)-1])
	cfg.routes += `
	notify /to {
		redis {redis}
		stream {stream}
		auth_url {auth}
		recipient_field to
	}`
	if err := cfg.reload(); err != nil {
		t.Fatal(err)
	}
	memBefore := testkit.MetricValue(t, base+"/metrics", `caddy_notify_replayed_events_total{source="memory"}`)
	redisBefore := testkit.MetricValue(t, base+"/metrics", `caddy_notify_replay_redis_commands_total`)
	req := testkit.Request(t, base+"/to", "bob-token")
	req.Header.Set("Last-Event-ID", ids[1])
	s := testkit.OpenStream(t, req)
	for i := 3; i <= 5; i++ {
		if ev := s.Next(t, 5*time.Second); ev.ID != ids[i-1] {
			t.Fatalf("got %+v, want entry %d", ev, i)
		}
	}
	if d := testkit.MetricValue(t, base+"/metrics", `caddy_notify_replayed_events_total{source="memory"}`) - memBefore; d != 3 {
		t.Errorf("replayed from memory rose by %v, want 3", d)
	}
	// One command: the XINFO STREAM that checks nothing was deleted.
	if d := testkit.MetricValue(t, base+"/metrics", `caddy_notify_replay_redis_commands_total`) - redisBefore; d != 1 {
		t.Errorf("%v Redis commands for a resume inside the window, want 1", d)
	}
}

// TestNewStreamGetsAStartingPosition: a stream that has received nothing
// yet still resumes without loss, because it starts with an id field.
func TestNewStreamGetsAStartingPosition(t *testing.T) {
	rs := testkit.StartRedis(t)
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	base := streamSetup(t, rs).base()
	last := xadd(t, c, numberedMsg("bob", 1)) // someone else's, before alice connects
	waitReaderAt(t, base+"/events", "bob-token", last)
	s := testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token"))
	s.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"}, testkit.Frame{Kind: testkit.FramePosition, ID: last})
	s.Close() // gone before any event of its own
	xadd(t, c, numberedMsg("alice", 1))
	xadd(t, c, numberedMsg("alice", 2))
	req := testkit.Request(t, base+"/events", "alice-token")
	req.Header.Set("Last-Event-ID", last) // the position
	s2 := testkit.OpenStream(t, req)
	for i := 1; i <= 2; i++ {
		if ev := s2.Next(t, 5*time.Second); ev.Data != numberedMsg("alice", i) {
			t.Fatalf("got %+v, want alice's %d", ev, i)
		}
	}
}

// TestRetractedEntriesNeverReplayed: entries removed from Redis while Caddy
// runs (XDEL, XTRIM, DEL of the stream) are never replayed, though the
// window had read them: a resume gets what Redis still holds after its ID,
// in order, behind a history_truncated reset that says something is gone.
func TestRetractedEntriesNeverReplayed(t *testing.T) {
	rs := testkit.StartRedis(t)
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	base := streamSetup(t, rs, "history_entries 1000", "heartbeat 0").base()
	live := openStreamWhenUp(t, base+"/events", "bob-token", "")
	ids := map[int]string{}
	add := func(from, to int) {
		for i := from; i <= to; i++ {
			ids[i] = xadd(t, c, numberedMsg("bob", i))
		}
		// Read live: the window holds them.
		for i := from; i <= to; i++ {
			if ev := live.Next(t, 5*time.Second); ev.ID != ids[i] {
				t.Fatalf("live: got %+v, want entry %d", ev, i)
			}
		}
	}
	msg := func(i int) testkit.Frame {
		return testkit.Frame{Kind: testkit.FrameEvent, ID: ids[i], Data: numberedMsg("bob", i)}
	}
	reset := testkit.Frame{Kind: testkit.FrameEvent, Name: "reset", Data: `{"reason":"history_truncated"}`}
	retry := testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"}
	resume := func(t *testing.T, after int, want ...testkit.Frame) {
		t.Helper()
		s := openStreamWhenUp(t, base+"/events", "bob-token", ids[after])
		s.Expect(t, append([]testkit.Frame{retry}, want...)...)
		s.Close()
	}
	add(1, 10)
	resume(t, 2, msg(3), msg(4), msg(5), msg(6), msg(7), msg(8), msg(9), msg(10)) // nothing removed: from memory

	t.Run("XDEL", func(t *testing.T) {
		if n := c.XDel(t.Context(), testStream, ids[5], ids[7]).Val(); n != 2 {
			t.Fatalf("XDEL removed %d", n)
		}
		resume(t, 2, reset, msg(3), msg(4), msg(6), msg(8), msg(9), msg(10))
		resume(t, 8, msg(9), msg(10)) // after the deletions: nothing is missing
	})
	t.Run("XTRIM", func(t *testing.T) {
		add(11, 14)
		if err := c.XTrimMaxLen(t.Context(), testStream, 3).Err(); err != nil { // keeps 12..14
			t.Fatal(err)
		}
		resume(t, 9, reset, msg(12), msg(13), msg(14))
	})
	t.Run("DEL", func(t *testing.T) {
		add(15, 16)
		if err := c.Del(t.Context(), testStream).Err(); err != nil {
			t.Fatal(err)
		}
		s := openStreamWhenUp(t, base+"/events", "bob-token", ids[14])
		s.Expect(t, retry)
		if f := s.NextFrame(t, 5*time.Second); f.Name != "reset" || f.Data != `{"reason":"history_truncated"}` {
			t.Fatalf("got %+v, want a history_truncated reset", f)
		}
		// The stream goes on: an entry added now is delivered live.
		ids[17] = xadd(t, c, numberedMsg("bob", 17))
		s.Expect(t, msg(17))
	})
}
