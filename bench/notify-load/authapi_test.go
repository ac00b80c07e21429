package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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

// TestAuthAPIGroups: with -groups or -group-mod (or their query on the
// auth URL, which wins), a 200 carries the user's groups.
func TestAuthAPIGroups(t *testing.T) {
	a := &authAPI{groups: []string{"all"}}
	srv := httptest.NewServer(a)
	defer srv.Close()
	get := func(token, query string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/auth"+query, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	for _, c := range []struct {
		token, query string
		code         int
		body         string
	}{
		{"u7", "", 200, `{"user_id":"7","groups":["all"]}`},
		{"u7", "?group_mod=3", 200, `{"user_id":"7","groups":["all","g1"]}`},
		{"u7", "?groups=&group_mod=1", 200, `{"user_id":"7","groups":["g0"]}`},
		{"u7", "?groups=a,b", 200, `{"user_id":"7","groups":["a","b"]}`},
		{"u7", "?groups=", 200, `{"user_id":"7"}`},
		{"u7", "?group_mod=x", 400, "group_mod must be a whole number, not \"x\""},
		{"x", "?group_mod=1", 401, `{"detail":"invalid token"}`},
	} {
		if code, body := get(c.token, c.query); code != c.code || body != c.body {
			t.Errorf("%s%s: %d %s, want %d %s", c.token, c.query, code, body, c.code, c.body)
		}
	}
	if len(a.groups) != 1 {
		t.Errorf("the API's own groups changed: %v", a.groups)
	}
}
