package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The load tool never hangs on HTTP/2 streams the server refuses or
// resets: streams beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS and
// streams reset before their headers are reported as connect errors, and
// connecting ends within the connect timeout with every stream accounted
// for (established or failed).
func TestH2RefusedAndResetStreamsAreReported(t *testing.T) {
	done := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		user, _ := strconv.Atoi(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer u"))
		if user%2 == 0 {
			panic(http.ErrAbortHandler) // RST_STREAM before any header
		}
		rw.Header().Set("Content-Type", "text/event-stream")
		rw.WriteHeader(http.StatusOK)
		rw.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-done:
		}
	})}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetUnencryptedHTTP2(true)
	srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 4}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { close(done); srv.Close() })

	// Two connections of 10 streams, over the server's 4 slots, and half
	// of them reset before their headers.
	w := newWorker(workerConfig{url: "http://" + ln.Addr().String() + "/events", proto: "h2", count: 20, users: 20,
		perConn: 10, connectTimeout: 2 * time.Second, concurrency: 64})
	connected := make(chan struct{})
	start := time.Now()
	go func() { w.connectAll(context.Background()); close(connected) }()
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("connecting hangs")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("connecting took %v with a 2s connect timeout", took)
	}
	// Which streams fail and how depends on timing, not that each one is
	// accounted for: the client sends streams before the server's SETTINGS
	// arrive and the server refuses those beyond its limit; a stream can
	// also take the place of a reset one whose handler is still unwinding,
	// and Go's server then queues its handler behind the four that never
	// end, so it times out.
	established, errs := len(w.estUsers), w.connErrs.snapshot()
	failed := 0
	for k, n := range errs {
		failed += n
		if !strings.Contains(k, "no free stream") && !strings.Contains(k, "REFUSED_STREAM") && !strings.Contains(k, "INTERNAL_ERROR") && k != "timeout" {
			t.Errorf("unexpected error %q (%d of %v)", k, n, errs)
		}
	}
	if established+failed != 20 || established > 8 || failed < 10 {
		t.Errorf("%d established, %d failed (%v); want 20 in all, at most 8 established (4 slots × 2 connections), every reset one failed",
			established, failed, errs)
	}
}
