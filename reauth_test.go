package notify

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/sse"
	"github.com/caddy-notify/notify/internal/testkit"
)

// With reauth, a token the auth API starts refusing ends its streams with
// the right revoked event, while other users' streams go on.
func TestReauthRevokesStreams(t *testing.T) {
	tests := []struct {
		name   string
		reply  testkit.AuthReply
		reason string
	}{
		{"401", testkit.AuthReply{Status: http.StatusUnauthorized, Body: `{}`}, sse.RevokedUnauthorized},
		{"403", testkit.AuthReply{Status: http.StatusForbidden, Body: `{}`}, sse.RevokedForbidden},
		{"another user", testkit.AuthReply{Status: http.StatusOK, Body: `{"user_id":"mallory"}`}, sse.RevokedUserChanged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := testkit.StartRedis(t)
			auth := testkit.StartAuthAPI(t, testkit.Users("alice", "bob"))
			base := serve(t, rs, auth, `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		reauth 500ms
		heartbeat 0
	}`)
			open := func(token string) *testkit.Stream {
				s := testkit.OpenStream(t, testkit.Request(t, base+"/events", token))
				s.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
				return s
			}
			alice := []*testkit.Stream{open("alice-token"), open("alice-token")}
			bob := open("bob-token")
			revokedBefore := testkit.MetricValue(t, base+"/metrics", `caddy_notify_revoked_total{reason="`+tt.reason+`"}`)

			auth.SetReply("alice-token", tt.reply)
			start := time.Now()
			for _, s := range alice {
				s.Expect(t, revokedFrame(tt.reason), testkit.Frame{Kind: testkit.FrameEnd})
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("revoked after %s, want within about two intervals", d)
			}
			if got := testkit.MetricValue(t, base+"/metrics", `caddy_notify_revoked_total{reason="`+tt.reason+`"}`) - revokedBefore; got != 2 {
				t.Errorf("revoked_total{reason=%q} rose by %v, want 2", tt.reason, got)
			}
			rs.Publish(t, defaultChannel, `{"recipient_id":"bob","n":1}`)
			bob.Expect(t, testkit.Frame{Kind: testkit.FrameEvent, Data: `{"recipient_id":"bob","n":1}`})
		})
	}
}

// An auth API that goes down during re-checks ends no stream; the failures
// are counted, and the checks go on.
func TestReauthSurvivesAuthOutage(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		auth_timeout 300ms
		reauth 300ms
		heartbeat 0
	}`)
	s := testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token"))
	s.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
	errorsBefore := testkit.MetricValue(t, base+"/metrics", `caddy_notify_reauth_checks_total{result="error"}`)
	timeoutsBefore := testkit.MetricValue(t, base+"/metrics", `caddy_notify_reauth_checks_total{result="timeout"}`)

	auth.SetReply("alice-token", testkit.AuthReply{Status: http.StatusInternalServerError, Body: `{}`})
	testkit.WaitFor(t, 5*time.Second, "failed re-checks counted", func() bool {
		return testkit.MetricValue(t, base+"/metrics", `caddy_notify_reauth_checks_total{result="error"}`) >= errorsBefore+2
	})
	auth.SetDelay(time.Second) // past auth_timeout
	testkit.WaitFor(t, 5*time.Second, "timed-out re-checks counted", func() bool {
		return testkit.MetricValue(t, base+"/metrics", `caddy_notify_reauth_checks_total{result="timeout"}`) >= timeoutsBefore+2
	})
	auth.Close() // unreachable
	time.Sleep(time.Second)
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","n":1}`)
	s.Expect(t, testkit.Frame{Kind: testkit.FrameEvent, Data: `{"recipient_id":"alice","n":1}`})
}

// 1,000 streams of 10 users cost about 10 auth calls per reauth interval:
// streams opened with the same credentials share one check.
func TestReauthChecksOncePerCredentials(t *testing.T) {
	rs := testkit.StartRedis(t)
	names := make([]string, 10)
	for i := range names {
		names[i] = fmt.Sprintf("u%d", i)
	}
	auth := testkit.StartAuthAPI(t, testkit.Users(names...))
	base := serve(t, rs, auth, `
	notify /events {
		redis {redis}
		auth_url {auth}
		reauth 1s
		heartbeat 0
	}`)
	addr := strings.TrimPrefix(base, "http://")
	// Raw connections that send their request and read only the answer's
	// first bytes: 1,000 streams without 3,000 client goroutines.
	for i := range 1000 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET /events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s-token\r\n\r\n", addr, names[i%10])
		buf := make([]byte, 12)
		if _, err := c.Read(buf); err != nil || string(buf) != "HTTP/1.1 200" {
			t.Fatalf("stream %d: %q, %v", i, buf, err)
		}
	}
	before := auth.Calls()
	time.Sleep(3 * time.Second)
	calls := auth.Calls() - before
	t.Logf("%d auth calls in 3 intervals for 1,000 streams of 10 users", calls)
	if calls < 20 || calls > 40 {
		t.Errorf("%d auth calls in 3 reauth intervals, want about 30 (10 per interval)", calls)
	}
}
