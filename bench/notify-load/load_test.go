package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMessageRoundTrip(t *testing.T) {
	for _, pad := range []int{0, 10} {
		b := appendMessage(nil, 42, 7, 1700000000123456789, pad)
		rcpt, seq, ts, ok := parseMessage(b)
		if !ok || string(rcpt) != "42" || seq != 7 || ts != 1700000000123456789 {
			t.Fatalf("pad %d: %s parsed as %q %d %d %v", pad, b, rcpt, seq, ts, ok)
		}
	}
	for _, bad := range []string{"", "{}", `{"recipient_id":"1"}`, `{"recipient_id":"1","seq":x}`,
		`{"recipient_id":"1","seq":2,"ts":}`, `{"recipient_id":1,"seq":2,"ts":3}`} {
		if _, _, _, ok := parseMessage([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func newState(user string) (*streamState, *counters) {
	c := &counters{}
	now := time.Unix(0, 2_000_000)
	return &streamState{user: []byte(user), c: c, now: func() time.Time { return now }}, c
}

func msg(user int, seq uint64) string {
	return string(appendMessage(nil, user, seq, 1_000_000, 0)) // 1 ms before now
}

func TestReadSSEAccounting(t *testing.T) {
	stream := "retry: 3000\n\n" +
		"id: 1-0\ndata: " + msg(5, 1) + "\n\n" + // unique
		": ping\n\n" + // heartbeat
		"data: " + msg(5, 3) + "\r\n\r\n" + // CRLF, unique
		"data: " + msg(5, 2) + "\n\n" + // out of order, unique
		"data: " + msg(5, 3) + "\n\n" + // duplicate
		"data: " + msg(6, 1) + "\n\n" + // misrouted
		"data: hello\n\n" + // unparsed
		"data: a\ndata: b\n\n" + // multi-line: unparsed
		"event: x\n\n" + // no data: nothing
		"data: " + msg(5, 200) + "\n\n" // unique, far seq grows the bitmap
	s, c := newState("5")
	err := readSSE(bufio.NewReaderSize(strings.NewReader(stream), 256), s)
	if err != io.EOF {
		t.Fatalf("readSSE: %v, want EOF", err)
	}
	got := map[string]uint64{
		"events": c.events.Load(), "unique": c.unique.Load(), "dup": c.dup.Load(), "ooo": c.ooo.Load(),
		"misrouted": c.misrouted.Load(), "unparsed": c.unparsed.Load(), "comments": c.comments.Load(),
	}
	want := map[string]uint64{"events": 6, "unique": 4, "dup": 1, "ooo": 1, "misrouted": 1, "unparsed": 2, "comments": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if c.lat.n.Load() != 6 || c.lat.quantile(0.5) < 900*time.Microsecond || c.lat.quantile(0.5) > 1100*time.Microsecond {
		t.Errorf("latency: n %d p50 %v, want 6 samples of 1ms", c.lat.n.Load(), c.lat.quantile(0.5))
	}
}

// A line longer than the reader's buffer is read from its start, the rest
// skipped: a fan-out message listing thousands of users still counts.
func TestReadSSELongLine(t *testing.T) {
	s, c := newState("1")
	long := msg(1, 1)[:len(msg(1, 1))-1] + `,"pad":"` + strings.Repeat("x", 300) + `"}`
	err := readSSE(bufio.NewReaderSize(strings.NewReader("data: "+long+"\n\ndata: "+msg(1, 2)+"\n\n"), 64), s)
	if err != io.EOF || c.unique.Load() != 2 || c.unparsed.Load() != 0 {
		t.Fatalf("err %v, unique %d, unparsed %d; want EOF, 2, 0", err, c.unique.Load(), c.unparsed.Load())
	}
	err = readSSE(bufio.NewReaderSize(strings.NewReader("data: "+strings.Repeat("x", 100)), 16), s)
	if err != io.EOF && err != io.ErrUnexpectedEOF {
		t.Fatalf("cut long line: %v", err)
	}
}

func TestPubCountAndExpected(t *testing.T) {
	// 25 events over 10 users: users 0-4 get 3, users 5-9 get 2.
	total := uint64(0)
	for u := range 10 {
		n := pubCount(u, 25, 10)
		want := uint64(2)
		if u < 5 {
			want = 3
		}
		if n != want {
			t.Errorf("user %d: %d events, want %d", u, n, want)
		}
		total += n
	}
	if total != 25 {
		t.Fatalf("total %d", total)
	}
	w := &worker{cfg: workerConfig{users: 10}, estUsers: []int32{0, 0, 9}} // two streams of user 0, one of 9
	if e, _ := w.expected(25); e != 3+3+2 {
		t.Fatalf("expected %d, want 8", e)
	}
	// Replaying exactly what the publisher sends to user 9 loses nothing.
	s, c := newState("9")
	for k := range 25 {
		if k%10 == 9 {
			s.onMessage([]byte(msg(9, uint64(k/10+1))))
		}
	}
	if c.unique.Load() != pubCount(9, 25, 10) || c.dup.Load() != 0 || c.ooo.Load() != 0 {
		t.Fatalf("unique %d dup %d ooo %d", c.unique.Load(), c.dup.Load(), c.ooo.Load())
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h hist
	if h.quantile(0.5) != 0 {
		t.Fatal("empty histogram")
	}
	// 1..10000 µs, once each.
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.9, 9000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		got := h.quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.04 {
			t.Errorf("q%.2f = %v, want within 4%% above %v", c.q, got, c.want)
		}
	}
	if time.Duration(h.max.Load()) != 10*time.Millisecond {
		t.Errorf("max %v", time.Duration(h.max.Load()))
	}
	// Small values are exact; merging adds counts.
	var a, b hist
	a.record(3 * time.Microsecond)
	b.record(40 * time.Microsecond)
	b.record(-time.Second) // clock step: counted as 0
	a.merge(b.sparse(), b.max.Load())
	if a.n.Load() != 3 || a.quantile(0.34) != 3*time.Microsecond+time.Microsecond-1 || a.quantile(1) != 40*time.Microsecond {
		t.Errorf("merged: n %d q.34 %v q1 %v", a.n.Load(), a.quantile(0.34), a.quantile(1))
	}
	// Bucket ranges tile the axis.
	prevHi := uint64(0)
	for i := 1; i < histBuckets; i++ {
		lo, hi := bucketRange(i)
		if lo != prevHi+1 || hi < lo || bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d: [%d,%d] after %d", i, lo, hi, prevHi)
		}
		prevHi = hi
	}
}

func TestAuthAPI(t *testing.T) {
	a := &authAPI{}
	srv := httptest.NewServer(a)
	defer srv.Close()
	get := func(auth, uri string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/auth", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if uri != "" {
			req.Header.Set("X-Original-URI", uri)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := get("Bearer u42", ""); code != 200 || body != `{"user_id":"42"}` {
		t.Errorf("u42: %d %s", code, body)
	}
	if code, _ := get("Bearer u42", "/sub/42"); code != 200 {
		t.Errorf("own channel: %d", code)
	}
	if code, _ := get("Bearer u42", "/sub/43"); code != 403 {
		t.Errorf("other channel: %d", code)
	}
	for _, bad := range []string{"", "Bearer", "Bearer x1", "Basic u1", "Bearer u"} {
		if code, _ := get(bad, ""); code != 401 {
			t.Errorf("%q: %d", bad, code)
		}
	}
	if n, ok := authCalls(srv.URL + "/stats"); !ok || n != 8 {
		t.Errorf("calls %d %v, want 8", n, ok)
	}
}

func TestTable(t *testing.T) {
	dir := t.TempDir()
	write := func(name, json string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("some text\n"+json+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("caddy-a.log", `{"proto":"h1","streams_requested":10,"streams_established":10,"users":10,"rate":5,"cpu_s_per_1000_deliveries":0.2,"p50_ms":1}`)
	write("nchan-a.log", `{"proto":"h1","streams_requested":10,"streams_established":10,"users":10,"rate":5,"cpu_s_per_1000_deliveries":0.1,"p50_ms":2}`)
	var sb strings.Builder
	writeTable(&sb, dir, []string{"a", "b"})
	out := sb.String()
	for _, want := range []string{"| (a) 10 h1 streams / 10 users / 5 ev/s | streams established | 10 / 10 | 10 / 10 | 1.00 |",
		"| CPU s per 1,000 deliveries | 0.2000 | 0.1000 | 2.00 |", "| latency p50 (ms) | 1.00 | 2.00 | 0.50 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "(b)") {
		t.Error("table has a workload without logs")
	}
}

func TestReadSSELastEventID(t *testing.T) {
	s, c := newState("5")
	read := func(stream string) {
		t.Helper()
		if err := readSSE(bufio.NewReaderSize(strings.NewReader(stream), 256), s); err != io.EOF {
			t.Fatalf("readSSE: %v, want EOF", err)
		}
	}
	if s.lastID != nil {
		t.Fatalf("lastID %q before any event", s.lastID)
	}
	read("retry: 3000\n\n: ping\n\n")
	if len(s.lastID) != 0 {
		t.Fatalf("lastID %q after no id", s.lastID)
	}
	read("id: 1700000000000-0\ndata: " + msg(5, 1) + "\n\n" +
		"data: " + msg(5, 2) + "\nid:1700000000000-1\r\n\r\n") // field order and no space do not matter
	if string(s.lastID) != "1700000000000-1" {
		t.Fatalf("lastID %q, want 1700000000000-1", s.lastID)
	}
	// An event without id keeps the last one; an id with NUL is ignored.
	read("data: " + msg(5, 3) + "\n\nid: 9-\x00\ndata: " + msg(5, 4) + "\n\n")
	if string(s.lastID) != "1700000000000-1" {
		t.Fatalf("lastID %q, want it unchanged", s.lastID)
	}
	// A connection cut before the event's blank line does not move it.
	read("id: 1700000000001-0\ndata: " + msg(5, 5) + "\n")
	if string(s.lastID) != "1700000000000-1" {
		t.Fatalf("lastID %q after an undispatched event", s.lastID)
	}
	// A reset is no delivery, but its id counts.
	read("event: reset\nid: 1700000000002-0\ndata: {\"reason\":\"unknown_last_event_id\"}\n\n")
	if string(s.lastID) != "1700000000002-0" {
		t.Fatalf("lastID %q after a reset with id", s.lastID)
	}
	// Another named event is unparsed; an empty id clears the last one.
	read("event: other\ndata: " + msg(5, 6) + "\n\nid\n\n")
	if len(s.lastID) != 0 {
		t.Fatalf("lastID %q after an empty id", s.lastID)
	}
	if c.unique.Load() != 4 || c.resets.Load() != 1 || c.unparsed.Load() != 1 || c.dup.Load() != 0 || c.ooo.Load() != 0 {
		t.Fatalf("unique %d resets %d unparsed %d dup %d ooo %d, want 4 1 1 0 0",
			c.unique.Load(), c.resets.Load(), c.unparsed.Load(), c.dup.Load(), c.ooo.Load())
	}
}

// TestStormReconnect runs one HTTP/1.1 stream through a reconnect storm
// against a fake stream-mode server: the stream must come back with the last
// id it received (or without the header when it had none), and the
// accounting must span both connections.
func TestStormReconnect(t *testing.T) {
	for _, withEvents := range []bool{true, false} {
		done := make(chan struct{})
		lastIDs := make(chan string, 4)
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer u3" {
				rw.WriteHeader(401)
				return
			}
			last, has := r.Header["Last-Event-Id"]
			if has {
				lastIDs <- last[0]
			} else {
				lastIDs <- "(none)"
			}
			rw.Header().Set("Content-Type", "text/event-stream")
			switch {
			case !withEvents:
				fmt.Fprint(rw, ": ping\n\n")
			case !has: // seq 1 and 2, then a cut event (no blank line)
				fmt.Fprintf(rw, "id: 10-0\ndata: %s\n\nid: 10-1\ndata: %s\n\nid: 10-2\n", msg(3, 1), msg(3, 2))
			case last[0] == "10-1": // the replay of seq 3, a duplicate of 2, then live 4
				fmt.Fprintf(rw, "id: 10-2\ndata: %s\n\nid: 10-1\ndata: %s\n\nid: 11-0\ndata: %s\n\n", msg(3, 3), msg(3, 2), msg(3, 4))
			}
			rw.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-done:
			}
		}))
		w := newWorker(workerConfig{url: srv.URL + "/events", proto: "h1", count: 1, first: 3, users: 10,
			connectTimeout: 5 * time.Second, concurrency: 4, reconnectAt: time.Second})
		sem := make(chan struct{}, 1)
		var wg sync.WaitGroup
		sem <- struct{}{}
		wg.Add(1)
		ended := make(chan struct{})
		go func() { w.runH1(context.Background(), 3, sem, &wg); close(ended) }()
		wg.Wait()
		wait := func(what string, cond func() bool) {
			t.Helper()
			for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("events %v: timed out waiting for %s", withEvents, what)
				}
			}
		}
		want1, want2, wantID := uint64(2), uint64(4), "10-1"
		if !withEvents {
			want1, want2, wantID = 0, 0, "(none)"
			wait("the heartbeat", func() bool { return w.c.comments.Load() == 1 })
		}
		wait("the first events", func() bool { return w.c.unique.Load() == want1 })
		if got := <-lastIDs; got != "(none)" {
			t.Fatalf("first request had Last-Event-ID %q", got)
		}
		w.startStorm()
		w.startStorm() // once only
		wait("the reconnect", func() bool { return w.reconnects.Load() == 1 && w.c.unique.Load() == want2 })
		if got := <-lastIDs; got != wantID {
			t.Errorf("events %v: reconnect sent Last-Event-ID %q, want %q", withEvents, got, wantID)
		}
		r := w.result(0, 0, 0)
		wantDup := uint64(0)
		if withEvents {
			wantDup = 1
		}
		if r.Reconnects != 1 || r.ReconnectsID != map[bool]uint64{true: 1, false: 0}[withEvents] || r.ReconnectFailed != 0 ||
			r.Dup != wantDup || r.OOO != 0 || r.Misrouted != 0 || r.ClosedEarly != 0 || r.StormLastOKNs < r.StormStartNs || r.StormStartNs == 0 {
			t.Errorf("events %v: result %+v", withEvents, r)
		}
		close(done)
		srv.CloseClientConnections()
		<-ended
		srv.Close()
		if len(lastIDs) != 0 {
			t.Errorf("events %v: reconnected more than once", withEvents)
		}
	}
}

func TestGapRange(t *testing.T) {
	const s = int64(time.Second)
	start := int64(1000 * s)
	// 10 users, 10 events/s: event k at start + k/10 s goes to user k%10, seq k/10+1.
	// Storm at 5 s, reconnect done at 7 s: events from 4 s (k 40) to 7 s (k 70).
	for _, c := range []struct {
		user   int
		lo, hi uint64
	}{{0, 5, 8}, {3, 5, 7}, {9, 5, 7}} { // user 0: k 40..70; user 3: k 43, 53, 63
		lo, hi := gapRange(c.user, 10, 10, start, start+5*s, start+7*s)
		if lo != c.lo || hi != c.hi {
			t.Errorf("user %d: seqs %d..%d, want %d..%d", c.user, lo, hi, c.lo, c.hi)
		}
	}
	// A storm in the first second starts at event 0; a gap with no event of the user is none.
	if lo, hi := gapRange(2, 10, 10, start, start+s/2, start+s); lo != 1 || hi != 1 {
		t.Errorf("early gap: %d..%d, want 1..1", lo, hi)
	}
	if lo, hi := gapRange(5, 100, 10, start, start+5*s, start+5*s+s/10); lo != 0 || hi != 0 {
		t.Errorf("empty gap: %d..%d", lo, hi)
	}
	// Events of a gap are neither expected nor unique; others still are.
	w := &worker{cfg: workerConfig{users: 10}, estUsers: []int32{3}, gaps: []gap{{3, 5, 7}}}
	if e, g := w.expected(100); e != 10-3 || g != 3 {
		t.Errorf("expected %d gaps %d, want 7 3", e, g)
	}
	if e, g := w.expected(60); e != 6-2 || g != 2 { // seq 7 not published yet
		t.Errorf("expected %d gaps %d, want 4 2", e, g)
	}
	st, c := newState("3")
	st.gapLo, st.gapHi = 5, 7
	for _, seq := range []uint64{6, 8, 9, 6} {
		st.onMessage([]byte(msg(3, seq)))
	}
	if c.unique.Load() != 2 || c.gapRecv.Load() != 1 || c.dup.Load() != 1 {
		t.Errorf("unique %d gapRecv %d dup %d, want 2 1 1", c.unique.Load(), c.gapRecv.Load(), c.dup.Load())
	}
}

func TestParseIDPair(t *testing.T) {
	for _, c := range []struct {
		id   string
		want [2]uint64
		ok   bool
	}{
		{"1700000000000-0", [2]uint64{1700000000000, 0}, true},
		{"1796646471:12", [2]uint64{1796646471, 12}, true},
		{"", [2]uint64{}, false},
		{"12", [2]uint64{}, false},
		{"-1", [2]uint64{}, false},
		{"1-", [2]uint64{}, false},
		{"1-x", [2]uint64{}, false},
		{"1:[0]", [2]uint64{}, false},
	} {
		v, ok := parseIDPair([]byte(c.id))
		if ok != c.ok || v != c.want {
			t.Errorf("%q: %v %v, want %v %v", c.id, v, ok, c.want, c.ok)
		}
	}
	s, c := newState("1")
	for _, id := range []string{"5-0", "5-1", "x", "5-1", "4-9", "6-0"} {
		s.onMessageID([]byte(id))
	}
	if c.idRegress.Load() != 2 {
		t.Errorf("%d regressions, want 2 (5-1 again, 4-9)", c.idRegress.Load())
	}
}
