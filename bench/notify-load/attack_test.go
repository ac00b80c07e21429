package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRandomToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok := string(appendRandomToken(nil))
		if len(tok) != 33 || tok[0] != 'r' || strings.Trim(tok[1:], "0123456789abcdef") != "" {
			t.Fatalf("token %q, want r and 32 hex digits", tok)
		}
		if _, ok := tokenUser("Bearer " + tok); ok {
			t.Fatalf("the auth API knows %q", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q twice", tok)
		}
		seen[tok] = true
	}
	a := &rapidReset{token: "u1"}
	if got := string(a.appendToken(nil)); got != "Bearer u1" {
		t.Errorf("fixed token: %q", got)
	}
}

func TestParseStatusLine(t *testing.T) {
	for line, want := range map[string]int{"HTTP/1.1 401 Unauthorized\r\n": 401, "HTTP/1.0 200 OK\n": 200, "HTTP/1.1 504\r\n": 504} {
		if code, err := parseStatusLine([]byte(line)); err != nil || code != want {
			t.Errorf("%q: %d %v, want %d", line, code, err, want)
		}
	}
	for _, bad := range []string{"", "HTTP/1.1\r\n", "SSH-2.0-x\r\n", "HTTP/1.1 abc x\r\n", "HTTP/1.1 042 x\r\n"} {
		if _, err := parseStatusLine([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// h2cServer serves handler over h2c (prior knowledge) and HTTP/1.1.
func h2cServer(t *testing.T, handler http.Handler) (addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: handler, Protocols: &protos}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestRapidReset runs the attacker against net/http's own h2c server: the
// frames must be valid (requests reach the handler with the tokens, and
// are cancelled), and the server's GOAWAY for too many resets must end in
// a reconnect, not a stop.
func TestRapidReset(t *testing.T) {
	var started, cancelled, badToken atomic.Int64
	addr := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		if a := r.Header.Get("Authorization"); !strings.HasPrefix(a, "Bearer r") || len(a) != len("Bearer ")+33 || r.URL.Path != "/events" {
			badToken.Add(1)
		}
		select {
		case <-r.Context().Done():
			cancelled.Add(1)
		case <-time.After(time.Second):
		}
	}))
	a := &rapidReset{addr: addr, authority: addr, path: "/events", perLoop: 50, writeTimeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	a.run(ctx)
	// Paced: one loop per interval.
	paced := &rapidReset{addr: addr, authority: addr, path: "/events", perLoop: 10, interval: 50 * time.Millisecond, writeTimeout: time.Second}
	pctx, pcancel := context.WithTimeout(context.Background(), 320*time.Millisecond)
	defer pcancel()
	paced.run(pctx)
	if l := paced.loops.Load(); l < 4 || l > 7 || paced.streams.Load() != 10*l {
		t.Errorf("paced at 50ms for 320ms: %d loops, %d streams; want 6 or so, 10 each", l, paced.streams.Load())
	}
	if a.streams.Load() < 50 || a.conns.Load() < 1 || started.Load() < 1 || badToken.Load() != 0 {
		t.Fatalf("streams %d conns %d; the server started %d handlers, %d with a bad token or path",
			a.streams.Load(), a.conns.Load(), started.Load(), badToken.Load())
	}
	t.Logf("%d streams reset over %d connections; the server started %d handlers, %d cancelled; goaways %v; ended: %v",
		a.streams.Load(), a.conns.Load(), started.Load(), cancelled.Load(), a.goaways.snapshot(), a.errs.snapshot())
	for k := range a.errs.snapshot() {
		if !strings.HasPrefix(k, "GOAWAY") {
			t.Errorf("a connection ended by %q", k)
		}
	}
}

func TestFloodGivesUpAndCountsAnswers(t *testing.T) {
	// A server that accepts and never answers: every attempt gives up.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	f := &h1Flood{url: "http://" + ln.Addr().String() + "/sub/{user}", clients: 4, giveUp: 100 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 450*time.Millisecond)
	f.run(ctx)
	cancel()
	if f.gaveUp.Load() < 8 || f.answered.Load() != 0 || f.sent.Load() < f.gaveUp.Load() {
		t.Errorf("silent server: sent %d, gave up %d, answered %d, errors %v", f.sent.Load(), f.gaveUp.Load(), f.answered.Load(), f.errs.snapshot())
	}
	// A server that refuses at once: answers, distinct tokens and URLs.
	var mu sync.Mutex
	tokens, paths := map[string]bool{}, map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tokens[r.Header.Get("Authorization")], paths[r.URL.Path] = true, true
		mu.Unlock()
		w.WriteHeader(401)
	}))
	defer srv.Close()
	f = &h1Flood{url: srv.URL + "/sub/{user}", clients: 4, giveUp: 100 * time.Millisecond}
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	f.run(ctx)
	cancel()
	st := f.statuses.snapshot()
	mu.Lock()
	defer mu.Unlock()
	if f.answered.Load() < 4 || st["status 401"] != int(f.answered.Load()) || len(tokens) < int(f.answered.Load()) || len(paths) < 2 {
		t.Errorf("refusing server: answered %d, statuses %v, %d distinct tokens, %d paths, errors %v",
			f.answered.Load(), st, len(tokens), len(paths), f.errs.snapshot())
	}
}
