package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// streamStates returns the worker's stream states so far.
func (w *worker) streamStates() []*streamState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*streamState(nil), w.states...)
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestEventSourceReconnectH1 follows one HTTP/1.1 stream through the ends
// a server may inflict, as an EventSource: it waits for the retry field's
// delay, comes back with Last-Event-ID, retries a refused attempt, and
// the accounting spans its connections (a replay that skips an event is a
// resume gap; an id that goes back, a regression).
func TestEventSourceReconnectH1(t *testing.T) {
	var (
		mu       sync.Mutex
		requests []string // Last-Event-ID of each request, "-" for none
		times    []time.Time
	)
	end := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n := len(requests)
		last := r.Header.Get("Last-Event-ID")
		if last == "" {
			last = "-"
		}
		requests, times = append(requests, last), append(times, time.Now())
		mu.Unlock()
		if n == 2 { // the first reconnect attempt is refused
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		switch n {
		case 0: // seq 1 and 2, then the server ends the stream
			fmt.Fprintf(w, "retry: 150\n\nid: 5-0\ndata: %s\n\nid: 5-1\ndata: %s\n\n", msg(3, 1), msg(3, 2))
			return
		case 1: // resumed: skips seq 3, gives 4 (a resume gap), then ends
			fmt.Fprintf(w, "retry: 150\n\nid: 6-0\ndata: %s\n\n", msg(3, 4))
			return
		default: // an id going back (a regression), then it stays
			fmt.Fprintf(w, "retry: 150\n\nid: 5-9\ndata: %s\n\n", msg(3, 5))
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-end:
		}
	}))
	defer srv.Close()
	defer close(end)
	w := newWorker(workerConfig{url: srv.URL + "/events", proto: "h1", count: 1, first: 3, users: 10,
		connectTimeout: 5 * time.Second, concurrency: 4, reconnect: true, retry: time.Hour})
	sem := make(chan struct{}, 1)
	var wg sync.WaitGroup
	sem <- struct{}{}
	wg.Add(1)
	go w.runH1(context.Background(), 3, sem, &wg)
	wg.Wait()
	waitFor(t, "the third connection", func() bool { return w.c.unique.Load() == 4 })

	mu.Lock()
	got := strings.Join(requests, " ")
	gaps := []time.Duration{times[1].Sub(times[0]), times[2].Sub(times[1]), times[3].Sub(times[2])}
	mu.Unlock()
	if got != "- 5-1 6-0 6-0" {
		t.Errorf("Last-Event-ID of the requests: %s, want - 5-1 6-0 6-0", got)
	}
	for i, d := range gaps { // the server's retry (150 ms), not -retry (an hour)
		if d < 140*time.Millisecond || d > 2*time.Second {
			t.Errorf("reconnect %d after %s, want the retry field's 150ms", i+1, d)
		}
	}
	waitFor(t, "the stream's state", func() bool { return len(w.streamStates()) == 1 })
	_, _, rec := w.streamStates()[0].stats()
	if rec.ends != 2 || rec.reconnects != 2 || rec.failures != 1 || rec.down || rec.upNs < times[3].UnixNano() {
		t.Errorf("connection record %+v", rec)
	}
	if w.reconnects.Load() != 2 || w.reconnectsID.Load() != 2 || w.reconnFailed.Load() != 1 ||
		w.reconnErrs.snapshot()["status 503"] != 1 || w.closedEarly.Load() != 2 {
		t.Errorf("reconnects %d (with id %d), failed %d %v, ended %d", w.reconnects.Load(), w.reconnectsID.Load(),
			w.reconnFailed.Load(), w.reconnErrs.snapshot(), w.closedEarly.Load())
	}
	if w.c.resumeGaps.Load() != 1 || w.c.resumeGapEvents.Load() != 1 || w.c.idRegress.Load() != 1 {
		t.Errorf("resume gaps %d (%d events), id regressions %d, want 1 1 1",
			w.c.resumeGaps.Load(), w.c.resumeGapEvents.Load(), w.c.idRegress.Load())
	}
	// 5 events for user 3 of 10: seq 3 lost, while connected (it was
	// due after the stream was back: a late loss).
	w.pubStart.Store(time.Now().Add(-time.Hour).UnixNano())
	w.cfg.rate = 1e9 // every event due at once, long before
	f := w.perStream(50, 0)
	if f.Ended != 1 || f.Ends != 2 || f.Losing != 1 || f.Lost != 1 || f.Down != 0 || f.Late != 0 {
		t.Errorf("figures %+v", f)
	}
	// Once the worker reports, an ended stream stops reconnecting.
	w.result(0, 0, 0)
	end2 := time.Now()
	srv.CloseClientConnections()
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	last := times[len(times)-1]
	mu.Unlock()
	if last.After(end2) {
		t.Error("the stream reconnected after the worker reported")
	}
}

// TestEventSourceReconnectH2 ends h2 streams both ways a server does: a
// reset of each stream (the connection lives on), and the connection's
// end; the streams come back on the connection they share, or on a new
// one dialed for the slot.
func TestEventSourceReconnectH2(t *testing.T) {
	var (
		reset   atomic.Bool
		opened  atomic.Int64
		stopAll = make(chan struct{})
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		opened.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "retry: 50\n\n")
		w.(http.Flusher).Flush()
		for !reset.Load() {
			select {
			case <-r.Context().Done():
				return
			case <-stopAll:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		panic(http.ErrAbortHandler) // RST_STREAM
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	defer close(stopAll)

	w := newWorker(workerConfig{url: srv.URL + "/events", proto: "h2", count: 8, users: 8, perConn: 4,
		connectTimeout: 5 * time.Second, concurrency: 16, reconnect: true, retry: time.Hour})
	w.connectAll(context.Background())
	waitFor(t, "8 streams", func() bool { return len(w.streamStates()) == 8 })
	if w.conns.Load() != 2 {
		t.Fatalf("%d connections, want 2 (errors %v)", w.conns.Load(), w.connErrs.snapshot())
	}
	// Reset every stream once: all come back.
	reset.Store(true)
	waitFor(t, "the resets", func() bool { return w.closedEarly.Load() == 8 })
	reset.Store(false)
	waitFor(t, "8 reconnects", func() bool { return w.reconnects.Load() == 8 })
	// End the connections: the streams come back over new ones.
	srv.CloseClientConnections()
	waitFor(t, "16 reconnects", func() bool { return w.reconnects.Load() == 16 })
	if n := w.conns.Load(); n < 4 || n > 6 {
		t.Errorf("%d connections made, want 2 and then about 2 more", n)
	}
	if errs := w.closeErrs.snapshot(); len(errs) == 0 {
		t.Error("no close reasons")
	}
	f := w.perStream(0, 0)
	if f.Ended != 8 || f.Ends != 16 || f.Reconnects != 16 || f.Down != 0 {
		t.Errorf("figures %+v", f)
	}
	w.result(0, 0, 0)
}
