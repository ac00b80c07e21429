package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestAuthErrors(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, map[string]authReply{
		"ok-token":      {200, `{"user_id":"alice"}`},
		"expired":       {401, `{"detail":"expired"}`},
		"banned":        {403, `{"detail":"no"}`},
		"broken":        {500, `oops`},
		"notfound":      {404, `{}`},
		"redirect":      {302, ``},
		"nouser":        {200, `{"id":"alice"}`},
		"emptyuser":     {200, `{"user_id":""}`},
		"nulluser":      {200, `{"user_id":null}`},
		"floatuser":     {200, `{"user_id":42.0}`},
		"expuser":       {200, `{"user_id":4.2e1}`},
		"booluser":      {200, `{"user_id":true}`},
		"staruser":      {200, `{"user_id":"*"}`},
		"notjson":       {200, `alice`},
		"arrayresponse": {200, `["alice"]`},
	})
	dead := fmt.Sprintf("http://127.0.0.1:%d/check", freePort(t)) // nothing listens there
	cfg := &caddyConfig{redis: rs, auth: auth, vars: map[string]string{"dead": dead}, routes: `
	notify /events {
		redis {redis}
		auth_url {auth}
		auth_timeout 300ms
	}
	notify /dead {
		redis {redis}
		auth_url {dead}
	}`}
	base := cfg.load(t)

	tests := []struct {
		name      string
		path      string
		header    string // Authorization header
		status    int
		errMsg    string
		authCalls int64 // auth API calls this request must make
	}{
		{"auth api 401", "/events", "Bearer expired", 401, "Invalid or expired token.", 1},
		{"unknown token", "/events", "Bearer whoever", 401, "Invalid or expired token.", 1},
		{"auth api 403", "/events", "Bearer banned", 403, "Access denied.", 1},
		{"auth api 500", "/events", "Bearer broken", 502, "Authentication service unavailable.", 1},
		{"auth api 404", "/events", "Bearer notfound", 502, "Authentication service unavailable.", 1},
		{"auth api redirect", "/events", "Bearer redirect", 502, "Authentication service unavailable.", 1},
		{"no user field", "/events", "Bearer nouser", 502, "Authentication service returned no user.", 1},
		{"empty user", "/events", "Bearer emptyuser", 502, "Authentication service returned no user.", 1},
		{"null user", "/events", "Bearer nulluser", 502, "Authentication service returned no user.", 1},
		{"float user", "/events", "Bearer floatuser", 502, "Authentication service returned no user.", 1},
		{"exponent user", "/events", "Bearer expuser", 502, "Authentication service returned no user.", 1},
		{"bool user", "/events", "Bearer booluser", 502, "Authentication service returned no user.", 1},
		{"star user", "/events", "Bearer staruser", 502, "Authentication service returned no user.", 1},
		{"not json", "/events", "Bearer notjson", 502, "Authentication service returned no user.", 1},
		{"array response", "/events", "Bearer arrayresponse", 502, "Authentication service returned no user.", 1},
		{"auth api unreachable", "/dead", "Bearer ok-token", 502, "Authentication service unavailable.", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := auth.calls.Load()
			req := request(t, base+tt.path, "")
			req.Header.Set("Authorization", tt.header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := jsonBody(t, resp.Body)["error"]; got != tt.errMsg {
				t.Errorf("error %q, want %q", got, tt.errMsg)
			}
			wantChallenge := ""
			if tt.status == 401 {
				wantChallenge = `Bearer error="invalid_token"`
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, wantChallenge)
			}
			if calls := auth.calls.Load() - before; calls != tt.authCalls {
				t.Errorf("auth API called %d times, want %d", calls, tt.authCalls)
			}
		})
	}

	t.Run("auth api timeout", func(t *testing.T) {
		auth.setDelay(2 * time.Second)
		defer auth.setDelay(0)
		start := time.Now()
		resp, err := http.DefaultClient.Do(request(t, base+"/events", "ok-token"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("status %d, want 504", resp.StatusCode)
		}
		if got := jsonBody(t, resp.Body)["error"]; got != "Authentication service timed out." {
			t.Errorf("error %q", got)
		}
		if el := time.Since(start); el > 1500*time.Millisecond {
			t.Errorf("answered after %s; auth_timeout is 300ms", el)
		}
	})
}

func TestTokenSources(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice", "bob"))
	base := serve(t, rs, auth, `
	notify /events {
		redis {redis}
		auth_url {auth}
		token_query access_token
		token_cookie session
	}`)

	t.Run("query", func(t *testing.T) {
		s := openStream(t, request(t, base+"/events?access_token=alice-token", ""))
		rs.publish(t, DefaultChannel, `{"recipient_id":"alice","via":"query"}`)
		if ev := s.next(t, 5*time.Second); ev.data != `{"recipient_id":"alice","via":"query"}` {
			t.Fatalf("got %q", ev.data)
		}
	})
	t.Run("cookie, forwarded to the auth api", func(t *testing.T) {
		req := request(t, base+"/events", "")
		req.AddCookie(&http.Cookie{Name: "session", Value: "bob-token"})
		req.AddCookie(&http.Cookie{Name: "csrftoken", Value: "x1"})
		s := openStream(t, req)
		h := auth.lastHeaders()
		if got := h.Get("Authorization"); got != "Bearer bob-token" {
			t.Errorf("auth API got Authorization %q", got)
		}
		if got := h.Get("Cookie"); got != "session=bob-token; csrftoken=x1" {
			t.Errorf("auth API got Cookie %q", got)
		}
		rs.publish(t, DefaultChannel, `{"recipient_id":"bob","via":"cookie"}`)
		if ev := s.next(t, 5*time.Second); ev.data != `{"recipient_id":"bob","via":"cookie"}` {
			t.Fatalf("got %q", ev.data)
		}
	})
	t.Run("header wins over query and cookie", func(t *testing.T) {
		req := request(t, base+"/events?access_token=alice-token", "bob-token")
		req.AddCookie(&http.Cookie{Name: "session", Value: "alice-token"})
		s := openStream(t, req)
		rs.publish(t, DefaultChannel, `{"recipient_id":"alice","n":1}`)
		rs.publish(t, DefaultChannel, `{"recipient_id":"bob","n":2}`)
		if ev := s.next(t, 5*time.Second); ev.data != `{"recipient_id":"bob","n":2}` {
			t.Fatalf("got %q, want bob's message only", ev.data)
		}
	})
	t.Run("query wins over cookie", func(t *testing.T) {
		req := request(t, base+"/events?access_token=alice-token", "")
		req.AddCookie(&http.Cookie{Name: "session", Value: "bob-token"})
		openStream(t, req)
		if got := auth.lastHeaders().Get("Authorization"); got != "Bearer alice-token" {
			t.Errorf("auth API got Authorization %q", got)
		}
	})
}

// TestAuthClientPooled checks that consecutive streams reuse one keep-alive
// connection to the auth API instead of dialing each time.
func TestAuthClientPooled(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice"))
	base := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
	}`)
	for range 5 {
		s := openStream(t, request(t, base+"/", "alice-token"))
		s.close()
	}
	if n := auth.connections(); n != 1 {
		t.Errorf("auth API saw %d connections for 5 sequential streams, want 1", n)
	}
}

// TestAuthDedupesConcurrentChecks opens many streams with one token at once
// (a page reload storm): the auth API sees a single call.
func TestAuthDedupesConcurrentChecks(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice"))
	auth.setDelay(time.Second)
	base := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
	}`)
	url := base + "/"
	const n = 20
	results := make(chan int, n)
	for range n {
		go func() {
			resp, err := streamClient.Do(request(t, url, "alice-token"))
			if err != nil {
				results <- 0
				return
			}
			resp.Body.Close()
			results <- resp.StatusCode
		}()
	}
	for range n {
		if st := <-results; st != http.StatusOK {
			t.Fatalf("status %d", st)
		}
	}
	if calls := auth.calls.Load(); calls != 1 {
		t.Errorf("auth API called %d times for %d concurrent streams with one token, want 1", calls, n)
	}
}

// TestAuthCache drives the cache of a running handler through its clock:
// the cache sees time only through it, so entries expire exactly at
// auth_cache, however long the requests take.
func TestAuthCache(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice", "bob"))
	const ttl = time.Minute
	base := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
		auth_cache 1m
	}`)
	hs := runningHandlers(t)
	if len(hs) != 1 || hs[0].auth.cache == nil {
		t.Fatalf("%d running handlers, want one with an auth cache", len(hs))
	}
	start := time.Now()
	var elapsed atomic.Int64 // nanoseconds since start, on the cache's clock
	cache := hs[0].auth.cache
	cache.mu.Lock()
	cache.now = func() time.Time { return start.Add(time.Duration(elapsed.Load())) }
	cache.mu.Unlock()

	url := base + "/"
	status := func(token, cookie string) int {
		req := request(t, url, token)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := streamClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	steps := []struct {
		name          string
		advance       time.Duration // the clock moves on by this much before the step
		token, cookie string
		status        int
		calls         int64 // total auth API calls after the step
	}{
		{"first check", 0, "alice-token", "", 200, 1},
		{"cached", 0, "alice-token", "", 200, 1},
		{"other token", 0, "bob-token", "", 200, 2},
		{"other cookie", 0, "alice-token", "s=1", 200, 3},
		{"refusal", 0, "nobody", "", 401, 4},
		{"refusals are not cached", 0, "nobody", "", 401, 5},
		{"cached until just before auth_cache", ttl - time.Nanosecond, "alice-token", "", 200, 5},
		{"expired at auth_cache", time.Nanosecond, "alice-token", "", 200, 6},
		{"cached again", 0, "alice-token", "", 200, 6},
		{"every entry expires", 0, "bob-token", "", 200, 7},
	}
	for _, st := range steps {
		elapsed.Add(int64(st.advance))
		if got := status(st.token, st.cookie); got != st.status {
			t.Fatalf("%s: status %d, want %d", st.name, got, st.status)
		}
		if got := auth.calls.Load(); got != st.calls {
			t.Fatalf("%s: %d auth API calls, want %d", st.name, got, st.calls)
		}
	}
}

// A flood of failed auth API calls is one log line per failureLogEvery,
// and the next line says how many were not logged.
func TestAuthFailuresLoggedOncePerInterval(t *testing.T) {
	core, logs := observer.New(zapcore.ErrorLevel)
	a := newAuthClient("http://127.0.0.1:1/", "user_id", time.Second, 0, 1, zap.New(core))
	t.Cleanup(a.close)
	fail := &authError{status: http.StatusBadGateway, msg: "Authentication service unavailable.", err: errors.New("refused")}
	for range 100 {
		a.logFailure(fail)
	}
	if n := logs.Len(); n != 1 {
		t.Fatalf("%d lines for 100 failures within %s, want 1", n, failureLogEvery)
	}
	a.failMu.Lock()
	a.failLogged = a.failLogged.Add(-failureLogEvery)
	a.failMu.Unlock()
	a.logFailure(fail)
	entries := logs.All()
	if len(entries) != 2 || entries[1].ContextMap()["failures_not_logged"] != int64(99) {
		t.Fatalf("second line %+v, want failures_not_logged 99", entries[len(entries)-1].ContextMap())
	}
}

// A request whose client leaves while its auth check waits is counted as
// canceled, so that a flood of abandoned requests shows in the metrics.
func TestCanceledRequestsAreCounted(t *testing.T) {
	rs := startRedis(t)
	auth := startAuthAPI(t, users("alice"))
	auth.setDelay(time.Second)
	base := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
	}`)
	canceled := metrics.streamsOpened.WithLabelValues(outcomeCanceled)
	before := testutil.ToFloat64(canceled)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	req := request(t, base+"/", "alice-token").WithContext(ctx)
	if _, err := streamClient.Do(req); err == nil {
		t.Fatal("the request was answered before the auth API")
	}
	waitFor(t, 2*time.Second, "the canceled request counted", func() bool {
		return testutil.ToFloat64(canceled)-before == 1
	})
}
