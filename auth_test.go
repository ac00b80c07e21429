package notify

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/testkit"
)

func TestAuthErrors(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, map[string]testkit.AuthReply{
		"ok-token":      {Status: 200, Body: `{"user_id":"alice"}`},
		"expired":       {Status: 401, Body: `{"detail":"expired"}`},
		"banned":        {Status: 403, Body: `{"detail":"no"}`},
		"broken":        {Status: 500, Body: `oops`},
		"notfound":      {Status: 404, Body: `{}`},
		"redirect":      {Status: 302, Body: ``},
		"nouser":        {Status: 200, Body: `{"id":"alice"}`},
		"emptyuser":     {Status: 200, Body: `{"user_id":""}`},
		"nulluser":      {Status: 200, Body: `{"user_id":null}`},
		"floatuser":     {Status: 200, Body: `{"user_id":42.0}`},
		"expuser":       {Status: 200, Body: `{"user_id":4.2e1}`},
		"booluser":      {Status: 200, Body: `{"user_id":true}`},
		"staruser":      {Status: 200, Body: `{"user_id":"*"}`},
		"notjson":       {Status: 200, Body: `alice`},
		"arrayresponse": {Status: 200, Body: `["alice"]`},
	})
	dead := fmt.Sprintf("http://127.0.0.1:%d/check", testkit.FreePort(t)) // nothing listens there
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
			before := auth.Calls()
			req := testkit.Request(t, base+tt.path, "")
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
			if calls := auth.Calls() - before; calls != tt.authCalls {
				t.Errorf("auth API called %d times, want %d", calls, tt.authCalls)
			}
		})
	}

	t.Run("auth api timeout", func(t *testing.T) {
		auth.SetDelay(2 * time.Second)
		defer auth.SetDelay(0)
		start := time.Now()
		resp, err := http.DefaultClient.Do(testkit.Request(t, base+"/events", "ok-token"))
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
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice", "bob"))
	base := serve(t, rs, auth, `
	notify /events {
		redis {redis}
		auth_url {auth}
		token_query access_token
		token_cookie session
	}`)

	t.Run("query", func(t *testing.T) {
		s := testkit.OpenStream(t, testkit.Request(t, base+"/events?access_token=alice-token", ""))
		rs.Publish(t, defaultChannel, `{"recipient_id":"alice","via":"query"}`)
		if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","via":"query"}` {
			t.Fatalf("got %q", ev.Data)
		}
	})
	t.Run("cookie, forwarded to the auth api", func(t *testing.T) {
		req := testkit.Request(t, base+"/events", "")
		req.AddCookie(&http.Cookie{Name: "session", Value: "bob-token"})
		req.AddCookie(&http.Cookie{Name: "csrftoken", Value: "x1"})
		s := testkit.OpenStream(t, req)
		h := auth.LastHeaders()
		if got := h.Get("Authorization"); got != "Bearer bob-token" {
			t.Errorf("auth API got Authorization %q", got)
		}
		if got := h.Get("Cookie"); got != "session=bob-token; csrftoken=x1" {
			t.Errorf("auth API got Cookie %q", got)
		}
		rs.Publish(t, defaultChannel, `{"recipient_id":"bob","via":"cookie"}`)
		if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"bob","via":"cookie"}` {
			t.Fatalf("got %q", ev.Data)
		}
	})
	t.Run("header wins over query and cookie", func(t *testing.T) {
		req := testkit.Request(t, base+"/events?access_token=alice-token", "bob-token")
		req.AddCookie(&http.Cookie{Name: "session", Value: "alice-token"})
		s := testkit.OpenStream(t, req)
		rs.Publish(t, defaultChannel, `{"recipient_id":"alice","n":1}`)
		rs.Publish(t, defaultChannel, `{"recipient_id":"bob","n":2}`)
		if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"bob","n":2}` {
			t.Fatalf("got %q, want bob's message only", ev.Data)
		}
	})
	t.Run("query wins over cookie", func(t *testing.T) {
		req := testkit.Request(t, base+"/events?access_token=alice-token", "")
		req.AddCookie(&http.Cookie{Name: "session", Value: "bob-token"})
		testkit.OpenStream(t, req)
		if got := auth.LastHeaders().Get("Authorization"); got != "Bearer alice-token" {
			t.Errorf("auth API got Authorization %q", got)
		}
	})
}

// TestAuthClientPooled checks that consecutive streams reuse one keep-alive
// connection to the auth API instead of dialing each time.
func TestAuthClientPooled(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
	}`)
	for range 5 {
		s := testkit.OpenStream(t, testkit.Request(t, base+"/", "alice-token"))
		s.Close()
	}
	if n := auth.Connections(); n != 1 {
		t.Errorf("auth API saw %d connections for 5 sequential streams, want 1", n)
	}
}

// TestAuthDedupesConcurrentChecks opens many streams with one token at once
// (a page reload storm): the auth API sees a single call.
func TestAuthDedupesConcurrentChecks(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	auth.SetDelay(time.Second)
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
			resp, err := testkit.StreamClient.Do(testkit.Request(t, url, "alice-token"))
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
	if calls := auth.Calls(); calls != 1 {
		t.Errorf("auth API called %d times for %d concurrent streams with one token, want 1", calls, n)
	}
}

// A request whose client leaves while its auth check waits is counted as
// canceled, so that a flood of abandoned requests shows in the metrics.
func TestCanceledRequestsAreCounted(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	auth.SetDelay(time.Second)
	base := serve(t, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
	}`)
	canceled := notifyMetrics.StreamsOpened.WithLabelValues(metrics.CanceledOutcome)
	before := testutil.ToFloat64(canceled)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	req := testkit.Request(t, base+"/", "alice-token").WithContext(ctx)
	if _, err := testkit.StreamClient.Do(req); err == nil {
		t.Fatal("the request was answered before the auth API")
	}
	testkit.WaitFor(t, 2*time.Second, "the canceled request counted", func() bool {
		return testutil.ToFloat64(canceled)-before == 1
	})
}
