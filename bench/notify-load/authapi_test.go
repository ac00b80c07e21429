package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func TestAuthAPIUnknownDelayAndStats(t *testing.T) {
	a := &authAPI{unknownDelay: 100 * time.Millisecond}
	srv := httptest.NewUnstartedServer(a)
	srv.Config.ConnState = a.connState
	srv.Start()
	defer srv.Close()
	get := func(token string) int {
		req, _ := http.NewRequest("GET", srv.URL+"/auth", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	start := time.Now()
	if code := get("u7"); code != 200 || time.Since(start) > 90*time.Millisecond {
		t.Errorf("known token: %d after %s, want 200 at once", code, time.Since(start))
	}
	// Three unknown tokens at once: each refused after the delay, all in flight together.
	var wg sync.WaitGroup
	start = time.Now()
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code := get("r0123"); code != 401 {
				t.Errorf("unknown token: %d", code)
			}
		}()
	}
	wg.Wait()
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("unknown tokens answered after %s, want the 100ms delay", d)
	}
	st, err := fetchAuthStats(srv.URL+"/stats", false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Calls != 4 || st.Refused != 3 || st.PeakIn != 3 || st.Inflight != 0 || st.Conns < 3 || st.PeakOpen < 3 {
		t.Errorf("stats %+v, want 4 calls, 3 refused, peak 3 in flight, ≥ 3 connections", st)
	}
	// A reset restarts the peaks from the current values.
	if _, err := fetchAuthStats(srv.URL+"/stats", true); err != nil {
		t.Fatal(err)
	}
	st, _ = fetchAuthStats(srv.URL+"/stats", false)
	if st.PeakIn != 0 || st.Calls != 4 {
		t.Errorf("after reset: %+v, want peak 0 in flight, the calls kept", st)
	}
	if n, ok := authCalls(srv.URL + "/stats"); !ok || n != 4 {
		t.Errorf("authCalls %d %v", n, ok)
	}
}

func TestPeakGauge(t *testing.T) {
	var g peakGauge
	g.add(1)
	g.add(1)
	g.add(-1)
	if g.cur.Load() != 1 || g.peak.Load() != 2 {
		t.Fatalf("cur %d peak %d, want 1 2", g.cur.Load(), g.peak.Load())
	}
	g.resetPeak()
	if g.peak.Load() != 1 {
		t.Fatalf("peak after reset %d, want 1", g.peak.Load())
	}
}
