package notify

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

const testStream = "events"

// streamSetup runs Caddy with one stream-mode handler at /events, with
// options (one per line) added to its block.
func streamSetup(t *testing.T, rs *redisServer, options ...string) *caddyConfig {
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
		auth:   startAuthAPI(t, users("u1", "u2", "u3", "alice", "bob")),
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

// waitReaderAt waits until the stream reader of every live hub has read the
// entry id.
func waitReaderAt(t testing.TB, id string) {
	t.Helper()
	waitFor(t, 5*time.Second, "the stream reader at "+id, func() bool {
		at := true
		hubs.Range(func(_, v any) bool {
			r, ok := v.(*hubSet).hubs[0].reader.(*streamReader)
			if ok {
				r.mu.Lock()
				at = at && r.win.last.String() == id
				r.mu.Unlock()
			}
			return true
		})
		return at
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
	s      *sseStream

	reconnects int // streams the server ended
}

func newSequenceClient(t *testing.T, url, user string) *sequenceClient {
	c := &sequenceClient{t: t, url: url, user: user, next: 1}
	c.connect()
	return c
}

func (c *sequenceClient) connect() {
	c.t.Helper()
	req := request(c.t, c.url, c.user+"-token")
	if c.lastID != "" {
		req.Header.Set("Last-Event-ID", c.lastID)
	}
	c.s = openStream(c.t, req)
}

func (c *sequenceClient) reconnect() {
	c.t.Helper()
	c.s.close()
	<-c.s.done
	c.connect()
}

// readUntil reads events until it has seen number n. When the server ends
// the stream (a slow client closed, a reload), it reconnects with its last
// ID, as EventSource does.
func (c *sequenceClient) readUntil(n int) {
	c.t.Helper()
	for c.next <= n {
		switch ev := c.s.nextFrame(c.t, 10*time.Second); ev.kind {
		case frameEnd:
			c.reconnects++
			c.connect()
		case framePosition:
			c.lastID = ev.id // as EventSource does
		case frameEvent:
			c.check(ev)
		}
	}
}

func (c *sequenceClient) check(ev sseEvent) {
	c.t.Helper()
	var m numbered
	if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
		c.t.Fatalf("%s: event %q: %v", c.user, ev.data, err)
	}
	if m.User != c.user {
		c.t.Fatalf("%s received %s's message %d: %+v", c.user, m.User, m.N, ev)
	}
	if m.N != c.next {
		c.t.Fatalf("%s received %d, want %d (a gap or a duplicate)", c.user, m.N, c.next)
	}
	if ev.id == "" {
		c.t.Fatalf("%s: event without id", c.user)
	}
	c.next++
	c.lastID = ev.id
}

func TestStreamDeliveryCarriesEntryIDs(t *testing.T) {
	rs := startRedis(t)
	base := streamSetup(t, rs).base()
	c := rs.client()
	t.Cleanup(func() { c.Close() })
	s := openStream(t, request(t, base+"/events", "alice-token"))
	malformedBefore := metricValue(t, base+"/metrics", `caddy_notify_dropped_total{reason="malformed"}`)
	id1 := xadd(t, c, `{"recipient_id":"alice","n":1}`)
	xadd(t, c, `{"recipient_id":"bob","n":2}`)
	xadd(t, c, `not json`)
	if err := c.XAdd(t.Context(), &redis.XAddArgs{Stream: testStream, Values: []any{"other", `{"recipient_id":"alice"}`}}).Err(); err != nil {
		t.Fatal(err)
	}
	id3 := xadd(t, c, "{\"recipient_id\":\"alice\",\n\"n\":3}")
	for _, want := range []sseEvent{{id: id1, data: `{"recipient_id":"alice","n":1}`}, {id: id3, data: "{\"recipient_id\":\"alice\",\n\"n\":3}"}} {
		if ev := s.next(t, 5*time.Second); ev.id != want.id || ev.data != want.data {
			t.Fatalf("got %+v, want %+v", ev, want)
		}
	}
	if d := metricValue(t, base+"/metrics", `caddy_notify_dropped_total{reason="malformed"}`) - malformedBefore; d != 2 {
		t.Errorf("malformed drops %v, want 2 (bad JSON, no data field)", d)
	}
}

func TestStreamResume(t *testing.T) {
	rs := startRedis(t)
	c := rs.client()
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
		clients["u1"].s.close()
		publish(4) // 12 entries: inside the window
		clients["u1"].reconnect()
		for u, cl := range clients {
			cl.readUntil(sent[u])
		}
	})
	t.Run("Last-Event-ID older than the window", func(t *testing.T) {
		before := metricValue(t, base+"/metrics", `caddy_notify_replayed_events_total{source="redis"}`)
		clients["u2"].s.close()
		publish(30) // 90 entries: the window holds 20
		clients["u2"].reconnect()
		for u, cl := range clients {
			cl.readUntil(sent[u])
		}
		if d := metricValue(t, base+"/metrics", `caddy_notify_replayed_events_total{source="redis"}`) - before; d < 20 {
			t.Errorf("replayed from redis rose by %v, want most of u2's 30", d)
		}
	})
	t.Run("last_event_id query on a new stream", func(t *testing.T) {
		cl := clients["u3"]
		cl.s.close()
		publish(2)
		cl.s = openStream(t, request(t, url+"?last_event_id="+cl.lastID, "u3-token"))
		cl.readUntil(sent["u3"])
	})
	t.Run("header wins over query", func(t *testing.T) {
		cl := clients["u3"]
		stale := "0-1"
		cl.s.close()
		publish(1)
		req := request(t, url+"?last_event_id="+stale, "u3-token")
		req.Header.Set("Last-Event-ID", cl.lastID)
		cl.s = openStream(t, req)
		cl.readUntil(sent["u3"])
	})
}

func TestStreamResumeEdgeCases(t *testing.T) {
	rs := startRedis(t)
	c := rs.client()
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
	waitReaderAt(t, ids[len(ids)-1])

	open := func(t *testing.T, lastID string) *sseStream {
		t.Helper()
		req := request(t, url, "alice-token")
		req.Header.Set("Last-Event-ID", lastID)
		s := openStream(t, req)
		s.expect(t, sseEvent{kind: frameRetry, retry: "3000"})
		return s
	}
	msg := func(n int) sseEvent { return sseEvent{kind: frameEvent, id: ids[n-1], data: numberedMsg("alice", n)} }
	reset := func(reason, id string) sseEvent {
		return sseEvent{kind: frameEvent, name: "reset", id: id, data: `{"reason":"` + reason + `"}`}
	}

	t.Run("replay limit", func(t *testing.T) {
		s := open(t, ids[9]) // 20 missed, limit 4
		s.expect(t, reset("replay_limit", ""), msg(27), msg(28), msg(29), msg(30))
	})
	t.Run("within the limit, from redis", func(t *testing.T) {
		s := open(t, ids[26]) // 3 missed, older than the 5-entry window? no: 27..30 are 4 entries
		s.expect(t, msg(28), msg(29), msg(30))
	})
	t.Run("id from the future", func(t *testing.T) {
		s := open(t, "99999999999999-0")
		s.expect(t, reset("unknown_last_event_id", ids[len(ids)-1]))
		ids = append(ids, xadd(t, c, numberedMsg("alice", 31)))
		s.expect(t, msg(31))
	})
	t.Run("trimmed history", func(t *testing.T) {
		if err := c.XTrimMaxLen(t.Context(), testStream, 3).Err(); err != nil {
			t.Fatal(err)
		}
		s := open(t, ids[2]) // 4..31 missed; only 29..31 retained
		f := s.nextFrame(t, 5*time.Second)
		if f.kind != frameEvent || f.name != "reset" ||
			f.data != `{"reason":"history_truncated"}` && f.data != `{"reason":"replay_limit"}` {
			t.Fatalf("first frame %+v, want a history_truncated or replay_limit reset", f)
		}
		// The window (5 entries: 27..31) and Redis (29..31) together
		// still hold the newest; the limit keeps 4 of them.
		s.expect(t, msg(28), msg(29), msg(30), msg(31))
	})
}

// TestStreamTrimmedBeyondWindow resumes from an ID whose successors were
// trimmed from Redis and evicted from the window.
func TestStreamTrimmedBeyondWindow(t *testing.T) {
	rs := startRedis(t)
	c := rs.client()
	t.Cleanup(func() { c.Close() })
	base := streamSetup(t, rs, "history_entries 3", "heartbeat 0").base()
	var ids []string
	for i := 1; i <= 20; i++ {
		ids = append(ids, xadd(t, c, numberedMsg("bob", i)))
	}
	if err := c.XTrimMaxLen(t.Context(), testStream, 10).Err(); err != nil { // keeps 11..20
		t.Fatal(err)
	}
	openStream(t, request(t, base+"/events", "bob-token")) // reader is up
	req := request(t, base+"/events", "bob-token")
	req.Header.Set("Last-Event-ID", ids[4]) // 6..10 are gone
	s := openStream(t, req)
	want := []sseEvent{
		{kind: frameRetry, retry: "3000"},
		{kind: frameEvent, name: "reset", data: `{"reason":"history_truncated"}`},
	}
	for i := 11; i <= 20; i++ {
		want = append(want, sseEvent{kind: frameEvent, id: ids[i-1], data: numberedMsg("bob", i)})
	}
	s.expect(t, want...)
}

// TestStreamHistoryToLiveUnderLoad publishes continuously for two users
// while one client keeps disconnecting and resuming: every number must
// arrive exactly once, in order. A replay-then-subscribe implementation
// loses or repeats entries published between its two steps.
func TestStreamHistoryToLiveUnderLoad(t *testing.T) {
	rs := startRedis(t)
	base := streamSetup(t, rs, "history_entries 200", "replay_limit 10000").base()
	url := base + "/events"
	alice := newSequenceClient(t, url, "alice")
	bob := newSequenceClient(t, url, "bob")

	const total = 3000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := rs.client()
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
	rs := startRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	c := rs.client()
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
		rs.stop()
		rs.start()
		c2 := rs.client()
		defer c2.Close()
		publish(c2, 5)
		readAll()
	})
	t.Run("config reload", func(t *testing.T) {
		// Same config, reloaded: streams end, clients resume with
		// Last-Event-ID while events keep coming.
		publish(c, 3)
		if err := cfg.reload(); err != nil {
			t.Fatal(err)
		}
		publish(c, 3)
		for _, cl := range clients {
			cl.s.waitEnded(t, 2*time.Second)
			cl.reconnect()
		}
		publish(c, 3)
		readAll()
	})
}

// TestResumeWaitsForALaggingReader resumes from an ID this instance's
// reader has not read yet (as when another instance delivered it): the
// resume waits for the reader instead of calling the ID unknown, and the
// stream continues after it without repeating it.
func TestResumeWaitsForALaggingReader(t *testing.T) {
	rs := startRedis(t)
	c := rs.client()
	t.Cleanup(func() { c.Close() })
	gate := make(chan struct{}, 1) // one token lets one paused read go
	var mu sync.Mutex
	paused := false
	hook := func() {
		mu.Lock()
		p := paused
		mu.Unlock()
		if p {
			<-gate
		}
	}
	opts, _ := redisOptions(rs.URL())
	hs := newHubSet(opts, source{stream: testStream, history: historyConfig{100, 1 << 20}, beforeRead: hook}, zap.NewNop())
	hb := hs.hubs[0]
	t.Cleanup(func() {
		close(gate)
		_ = hs.Destruct()
	})
	ix := hb.attach(indexKey{dataField: "data", recipientField: "recipient_id"})
	if !hb.waitUp(t.Context(), 5*time.Second) {
		t.Fatal("reader not up")
	}
	xadd(t, c, numberedMsg("alice", 1))
	reader := hb.reader.(*streamReader)
	waitFor(t, 5*time.Second, "entry 1 read", func() bool {
		reader.mu.Lock()
		defer reader.mu.Unlock()
		return reader.win.n == 1
	})
	mu.Lock()
	paused = true
	mu.Unlock()
	// The reader finishes its current XREAD BLOCK (up to readBlock), then
	// waits at the gate; entry 2 is added meanwhile.
	time.Sleep(readBlock + 200*time.Millisecond)
	id2, _ := parseEntryID(xadd(t, c, numberedMsg("alice", 2)))

	type result struct {
		res preamble
		err error
	}
	done := make(chan result, 1)
	sub := newSubscriber("alice", false, nil, queueLimit{events: 16})
	woken := wakeOnEvents(sub)
	go func() {
		res, err := hb.register(t.Context(), ix, sub, &id2, 100)
		done <- result{res, err}
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("resume returned before the reader caught up: %+v", r)
	default:
	}
	gate <- struct{}{} // let the reader read entry 2
	var r result
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("resume still waiting")
	}
	if r.err != nil || r.res.reset != nil || len(r.res.replay) != 0 {
		t.Fatalf("resume = %+v, %v; want nothing to replay and no reset", r.res, r.err)
	}
	mu.Lock()
	paused = false
	mu.Unlock()
	gate <- struct{}{}
	id3 := xadd(t, c, numberedMsg("alice", 3))
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("no live event after the resume")
	}
	got, _, _ := sub.take(nil)
	if len(got) != 1 || got[0].id.String() != id3 {
		t.Fatalf("live events %v, want only entry 3 (%s)", got, id3)
	}
}

// TestIndexAttachedToARunningStream adds, by a reload, a handler with
// another recipient field to a stream whose entries are already in memory:
// its history is rebuilt from the window, so it resumes from memory.
func TestIndexAttachedToARunningStream(t *testing.T) {
	rs := startRedis(t)
	c := rs.client()
	t.Cleanup(func() { c.Close() })
	cfg := streamSetup(t, rs)
	base := cfg.base()
	openStream(t, request(t, base+"/events", "alice-token")) // the reader is up
	var ids []string
	for i := 1; i <= 5; i++ {
		ids = append(ids, xadd(t, c, fmt.Sprintf(`{"recipient_id":"alice","to":"bob","n":%d}`, i)))
	}
	waitReaderAt(t, ids[len(ids)-1])
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
	memBefore := metricValue(t, base+"/metrics", `caddy_notify_replayed_events_total{source="memory"}`)
	redisBefore := metricValue(t, base+"/metrics", `caddy_notify_replay_redis_commands_total`)
	req := request(t, base+"/to", "bob-token")
	req.Header.Set("Last-Event-ID", ids[1])
	s := openStream(t, req)
	for i := 3; i <= 5; i++ {
		if ev := s.next(t, 5*time.Second); ev.id != ids[i-1] {
			t.Fatalf("got %+v, want entry %d", ev, i)
		}
	}
	if d := metricValue(t, base+"/metrics", `caddy_notify_replayed_events_total{source="memory"}`) - memBefore; d != 3 {
		t.Errorf("replayed from memory rose by %v, want 3", d)
	}
	if d := metricValue(t, base+"/metrics", `caddy_notify_replay_redis_commands_total`) - redisBefore; d != 0 {
		t.Errorf("%v Redis commands for a resume inside the window", d)
	}
}

// TestNewStreamGetsAStartingPosition: a stream that has received nothing
// yet still resumes without loss, because it starts with an id field.
func TestNewStreamGetsAStartingPosition(t *testing.T) {
	rs := startRedis(t)
	c := rs.client()
	t.Cleanup(func() { c.Close() })
	base := streamSetup(t, rs).base()
	last := xadd(t, c, numberedMsg("bob", 1)) // someone else's, before alice connects
	waitReaderAt(t, last)
	s := openStream(t, request(t, base+"/events", "alice-token"))
	s.expect(t, sseEvent{kind: frameRetry, retry: "3000"}, sseEvent{kind: framePosition, id: last})
	s.close() // gone before any event of its own
	xadd(t, c, numberedMsg("alice", 1))
	xadd(t, c, numberedMsg("alice", 2))
	req := request(t, base+"/events", "alice-token")
	req.Header.Set("Last-Event-ID", last) // the position
	s2 := openStream(t, req)
	for i := 1; i <= 2; i++ {
		if ev := s2.next(t, 5*time.Second); ev.data != numberedMsg("alice", i) {
			t.Fatalf("got %+v, want alice's %d", ev, i)
		}
	}
}
