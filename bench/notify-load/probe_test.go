package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestProber(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer u5" || r.URL.Path != "/ok/5" {
			w.WriteHeader(401)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "retry: 3000\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	mux.HandleFunc("/busy/", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(504) })
	mux.HandleFunc("/silent/", func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush() // a 200, then no frame
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, c := range []struct {
		path    string
		frame   bool
		ok      bool
		failure string
	}{
		{"/ok/{user}", true, true, ""},
		{"/busy/{user}", true, false, "status 504"},
		{"/silent/{user}", true, false, "no first frame: read: timeout"},
		{"/silent/{user}", false, true, ""}, // timed to the 200
	} {
		p := &prober{url: srv.URL + c.path, user: 5, src: "127.0.0.2", interval: 50 * time.Millisecond,
			timeout: 200 * time.Millisecond, firstFrame: c.frame}
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
		p.run(ctx)
		cancel()
		s := p.summary()
		if c.ok && (s.OK < 2 || s.Failed != 0 || s.Maxms <= 0 || s.Maxms > 200) ||
			!c.ok && (s.OK != 0 || s.Failed < 2 || s.Failures[c.failure] != int(s.Failed)) {
			t.Errorf("%s (frame %v): %+v", c.path, c.frame, s)
		}
	}
}
