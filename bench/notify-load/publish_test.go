package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// TestHTTPSender checks -publish http: one event per POST by default, a
// JSON array of -pub-batch events otherwise, every event sent once, and
// the events of a refused POST counted as failures.
func TestHTTPSender(t *testing.T) {
	for _, batch := range []int{1, 3} {
		var mu sync.Mutex
		var bodies []string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, string(b))
			mu.Unlock()
			if r.Header.Get("Content-Type") != "application/json" {
				w.WriteHeader(http.StatusUnsupportedMediaType)
				return
			}
			w.WriteHeader(http.StatusAccepted)
		}))
		send := httpSender(t.Context(), pubConfig{pubURL: srv.URL + "/publish", workers: 2, batch: batch, users: 10})
		if failed := send([]int{0, 1, 2, 3, 4, 5, 6}); failed != 0 {
			t.Errorf("batch %d: %d failed", batch, failed)
		}
		send(nil)
		srv.Close()
		var seqs []int
		for _, b := range bodies {
			var msgs []json.RawMessage
			if b[0] == '{' { // one event (a batch's remainder may be one)
				msgs = []json.RawMessage{json.RawMessage(b)}
			} else if err := json.Unmarshal([]byte(b), &msgs); err != nil || len(msgs) > batch {
				t.Fatalf("batch %d: body %q", batch, b)
			}
			for _, m := range msgs {
				rcpt, _, _, ok := parseMessage(m)
				if !ok {
					t.Fatalf("batch %d: message %q", batch, m)
				}
				n := 0
				for _, c := range rcpt {
					n = n*10 + int(c-'0')
				}
				seqs = append(seqs, n)
			}
		}
		slices.Sort(seqs)
		if !slices.Equal(seqs, []int{0, 1, 2, 3, 4, 5, 6}) {
			t.Errorf("batch %d: sent %v, want each of 0-6 once", batch, seqs)
		}
		if want := (7 + batch - 1) / batch; len(bodies) != want {
			t.Errorf("batch %d: %d POSTs, want %d", batch, len(bodies), want)
		}
	}
	// A refusing server: every event of a refused POST is a failure.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer srv.Close()
	send := httpSender(t.Context(), pubConfig{pubURL: srv.URL, workers: 1, batch: 2, users: 10})
	defer send(nil)
	if failed := send([]int{0, 1, 2}); failed != 3 {
		t.Errorf("%d failures, want 3", failed)
	}
}
