package notify

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/testkit"
)

// bigMessage is a message for user of exactly size bytes.
func bigMessage(user string, n, size int) string {
	head := fmt.Sprintf(`{"recipient_id":%q,"n":%d,"pad":"`, user, n)
	return head + strings.Repeat("x", size-len(head)-2) + `"}`
}

// Messages and entries over max_message_size are dropped unparsed and
// counted as too_large; those at the limit are delivered.
func TestTooLargeMessagesAreDropped(t *testing.T) {
	const limit = 4096
	for _, mode := range []string{"channel", "stream"} {
		t.Run(mode, func(t *testing.T) {
			rs := testkit.StartRedis(t)
			auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
			base := serve(t, rs, auth, `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		`+mode+` notifications
		max_message_size 4KiB
	}`)
			c := rs.Client()
			t.Cleanup(func() { c.Close() })
			publish := func(msg string) {
				if mode == "channel" {
					rs.Publish(t, "notifications", msg)
					return
				}
				// The entry's size counts its field name ("data").
				if err := c.XAdd(t.Context(), &redis.XAddArgs{Stream: "notifications", Values: []any{"data", msg}}).Err(); err != nil {
					t.Fatal(err)
				}
			}
			overhead := 0
			if mode == "stream" {
				overhead = len("data")
			}
			before := testkit.MetricValue(t, base+"/metrics", `caddy_notify_dropped_total{reason="too_large"}`)
			s := testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token"))
			publish(bigMessage("alice", 1, limit+1-overhead))
			publish(bigMessage("alice", 2, limit-overhead))
			publish(`{"recipient_id":"alice","n":3}`)
			for _, want := range []string{bigMessage("alice", 2, limit-overhead), `{"recipient_id":"alice","n":3}`} {
				if ev := s.Next(t, 5*time.Second); ev.Data != want {
					t.Fatalf("got %.60q…, want %.60q…", ev.Data, want)
				}
			}
			if d := testkit.MetricValue(t, base+"/metrics", `caddy_notify_dropped_total{reason="too_large"}`) - before; d != 1 {
				t.Errorf("too_large drops rose by %v, want 1", d)
			}
		})
	}
}

// smallWindowClient opens HTTP/1.1 connections with a 4 KiB receive
// buffer, so that a stream it does not read backs up into the server soon.
var smallWindowClient = &http.Client{Transport: &http.Transport{
	DisableKeepAlives: true,
	DialContext: (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = setReceiveBuffer(fd, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}).DialContext,
}}

// A stream that never reads holds at most about queue_bytes of events in
// the process, then it is closed as a slow client: with 1 MB messages and
// queue_size 1000, only queue_bytes (4 MiB) can close it early.
func TestNonReadingStreamHoldsAtMostQueueBytes(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		queue_size 1000
		queue_bytes 4MiB
		write_timeout 1h
	}`)
	resp, err := smallWindowClient.Do(testkit.Request(t, base+"/events", "alice-token"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	drops := func() float64 {
		return testkit.MetricValue(t, base+"/metrics", `caddy_notify_dropped_total{reason="slow_client"}`)
	}
	before := drops()
	heapBefore := heapInUse()
	peak := heapBefore
	const size = 1_000_000
	msg := bigMessage("alice", 0, size)
	published := 0
	for ; published < 300 && drops() == before; published++ {
		rs.Publish(t, defaultChannel, msg)
		// Paced: Caddy keeps up, so what grows is the stream's queue.
		time.Sleep(5 * time.Millisecond)
		peak = max(peak, heapInUse())
	}
	if drops() == before {
		t.Fatalf("the stream is still open after %d MB", published)
	}
	// The kernel's socket buffers take several MB before the writer blocks
	// (not process memory); the process holds queue_bytes at most.
	t.Logf("closed after %d messages of 1 MB; heap rose by at most %d MiB", published, (peak-heapBefore)>>20)
	if published >= 100 {
		t.Errorf("closed after %d MB: queue_bytes is not enforced", published)
	}
	if grew := peak - heapBefore; grew > 24<<20 {
		t.Errorf("the heap rose by %d MiB while one stream did not read, want at most about queue_bytes (4 MiB) plus what Redis messages in flight take", grew>>20)
	}
}

// heapInUse returns the bytes of live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// livePeak watches the live heap, as each garbage collection measures it,
// until stop is called, and returns the highest seen. The collector runs
// often meanwhile (GOGC 10), so every peak of what is held is seen; garbage
// not yet collected does not count, since how much of it there is depends
// on the collector's pacing, not on what the module holds.
func livePeak(t *testing.T) (stop func() uint64) {
	old := debug.SetGCPercent(10)
	done := make(chan struct{})
	result := make(chan uint64, 1)
	go func() {
		sample := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
		var peak uint64
		for {
			rtmetrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				result <- peak
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	var peak uint64
	stop = func() uint64 {
		once.Do(func() {
			close(done)
			peak = <-result
			debug.SetGCPercent(old)
		})
		return peak
	}
	t.Cleanup(func() { stop() })
	return stop
}

// Stream mode with 300 entries of 1 MB: loading the window at start stays
// within history_bytes, clients resuming from the beginning get 200 with a
// reset where the replay budget cuts their history, and the shared reader
// keeps delivering to everybody else meanwhile.
func TestStreamMemoryIsBoundedInBytes(t *testing.T) {
	rs := testkit.StartRedis(t)
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	const size, entries = 1_000_000, 300
	pipe := c.Pipeline()
	for i := 1; i <= entries; i++ {
		pipe.XAdd(t.Context(), &redis.XAddArgs{Stream: testStream, Values: []any{"data", bigMessage("alice", i, size)}})
		if i%20 == 0 {
			if _, err := pipe.Exec(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	runtime.GC()
	base := heapInUse()
	peak := livePeak(t)
	url := streamSetup(t, rs, "history_bytes 32MiB").base() + "/events"
	testkit.WaitFor(t, 30*time.Second, "the window loaded", func() bool {
		return readersUp()
	})
	live := testkit.OpenStream(t, testkit.Request(t, url, "bob-token"))
	if grew := peak() - base; grew > 96<<20 {
		t.Errorf("starting on %d MB of entries took %d MiB of heap, want history_bytes (32 MiB) and one read (16 MiB) at most, with slack", entries, grew>>20)
	} else {
		t.Logf("start: heap peak %d MiB above the baseline", grew>>20)
	}

	peak = livePeak(t)
	// The clients keep what they check, not the events: they run in this
	// process, and 8 × 16 MB of parsed events would be counted as Caddy's:
	// each reads the raw stream through one small buffer, keeps its first
	// bytes and counts events by their blank-line ends.
	type result struct {
		status int
		head   string // the first bytes after the retry field
		events int
		err    error
	}
	const marker = `data: {"recipient_id":"alice","n":0}` + "\n\n"
	results := make(chan result, 8)
	for range 8 {
		go func() {
			req := testkit.Request(t, url, "alice-token")
			req.Header.Set("Last-Event-ID", "1-0")
			resp, err := testkit.StreamClient.Do(req)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			r := result{status: resp.StatusCode}
			if resp.StatusCode != http.StatusOK {
				results <- r
				return
			}
			buf := make([]byte, 64<<10)
			var head, tail []byte
			timer := time.AfterFunc(30*time.Second, func() { resp.Body.Close() })
			defer timer.Stop()
			for {
				n, err := resp.Body.Read(buf)
				chunk := append(tail, buf[:n]...)
				if len(head) < 200 {
					head = append(head, buf[:min(n, 200-len(head))]...)
				}
				r.events += bytes.Count(buf[:n], []byte("\n\n"))
				if bytes.Contains(chunk, []byte(marker)) {
					r.head = strings.TrimPrefix(string(head), "retry: 3000\n\n")
					results <- r
					return
				}
				tail = append(tail[:0], chunk[max(0, len(chunk)-len(marker)):]...)
				if err != nil {
					r.err = fmt.Errorf("ended after %d events: %w", r.events, err)
					results <- r
					return
				}
			}
		}()
	}
	// Meanwhile, live delivery goes on.
	for i := range 5 {
		start := time.Now()
		xadd(t, c, fmt.Sprintf(`{"recipient_id":"bob","n":%d}`, i))
		ev := live.Next(t, 5*time.Second)
		if d := time.Since(start); d > time.Second {
			t.Errorf("a live event took %s during the replays (%q)", d, ev.Data)
		}
		time.Sleep(100 * time.Millisecond)
	}
	xadd(t, c, `{"recipient_id":"alice","n":0}`)
	for range 8 {
		r := <-results
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("resume: status %d, %v", r.status, r.err)
		}
		if r.events < 3 || !strings.HasPrefix(r.head, "event: reset\ndata: {\"reason\":\"replay_limit\"}\n\n") {
			t.Fatalf("resume of %d events began %q, want the replay_limit reset", r.events, r.head)
		}
	}
	// The window (32 MiB), the reader's page (16 MiB) and two replays (a
	// page and the kept events, 32 MiB each): 112 MiB at most. Eight
	// resumed streams stay open meanwhile: none may keep its replay.
	if grew := peak() - base; grew > 120<<20 {
		t.Errorf("8 resumes over %d MB of history took %d MiB of live heap, want the window plus two replays' budgets (112 MiB)", entries, grew>>20)
	} else {
		t.Logf("8 resumes: heap peak %d MiB above the baseline", grew>>20)
	}
}
