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

// revokedFrame is the last frame of a revoked stream.
func revokedFrame(reason string) testkit.Frame {
	return testkit.Frame{Kind: testkit.FrameEvent, Name: "revoked", Data: `{"reason":"` + reason + `"}`}
}

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

// max_streams_per_user refuses a user's third stream with 429 after
// authentication, while another user's stream opens; max_streams refuses
// the fourth stream with 503 before the auth API is asked.
func TestStreamLimits(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice", "bob"))
	base := serve(t, rs, auth, `
	notify /per-user {
		redis {redis}
		auth_url {auth}
		max_streams_per_user 2
	}
	notify /all {
		redis {redis}
		auth_url {auth}
		max_streams 3
	}`)
	refused := func(path, token string, status int, msg string) {
		t.Helper()
		resp, err := http.DefaultClient.Do(testkit.Request(t, base+path, token))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != status || resp.Header.Get("Retry-After") != "3" {
			t.Fatalf("%s: status %d, Retry-After %q; want %d, 3", path, resp.StatusCode, resp.Header.Get("Retry-After"), status)
		}
		if got := jsonBody(t, resp.Body); got["error"] != msg || len(got) != 1 {
			t.Fatalf("%s: body %v, want error %q", path, got, msg)
		}
	}

	a1 := testkit.OpenStream(t, testkit.Request(t, base+"/per-user", "alice-token"))
	testkit.OpenStream(t, testkit.Request(t, base+"/per-user", "alice-token"))
	refused("/per-user", "alice-token", http.StatusTooManyRequests, "Too many streams for this user.")
	testkit.OpenStream(t, testkit.Request(t, base+"/per-user", "bob-token"))
	a1.Close()
	testkit.WaitFor(t, 5*time.Second, "alice's place freed", func() bool {
		resp, err := testkit.StreamClient.Do(testkit.Request(t, base+"/per-user", "alice-token"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return false
		}
		t.Cleanup(func() { resp.Body.Close() })
		return true
	})

	for range 3 {
		testkit.OpenStream(t, testkit.Request(t, base+"/all", "bob-token"))
	}
	calls := auth.Calls()
	refused("/all", "bob-token", http.StatusServiceUnavailable, "Too many streams.")
	if got := auth.Calls(); got != calls {
		t.Errorf("the auth API was called %d times for a refused stream, want 0", got-calls)
	}
}

// A disconnect on the control channel ends the user's streams on every
// instance at once, with a revoked event, and leaves other users' alone;
// "*" ends every stream; malformed control messages are dropped and
// counted.
func TestControlChannelAcrossInstances(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, map[string]testkit.AuthReply{
		"alice-token": {Status: 200, Body: `{"user_id":"alice"}`},
		"bob-token":   {Status: 200, Body: `{"user_id":"bob"}`},
		"n42-token":   {Status: 200, Body: `{"user_id":42}`},
	})
	routes := `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		control_channel control
		heartbeat 0
	}`
	instances := []*caddyProcess{startCaddyProcess(t, rs.URL(), auth.URL, routes), startCaddyProcess(t, rs.URL(), auth.URL, routes)}
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	testkit.WaitFor(t, 10*time.Second, "both instances on the control channel", func() bool {
		return c.PubSubNumSub(t.Context(), "control").Val()["control"] == 2
	})
	open := func(p *caddyProcess, token string) *testkit.Stream {
		s := openStreamWhenUp(t, p.base()+"/events", token, "")
		s.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
		return s
	}
	var alice, bob, n42 []*testkit.Stream
	for _, p := range instances {
		alice = append(alice, open(p, "alice-token"))
		bob = append(bob, open(p, "bob-token"))
		n42 = append(n42, open(p, "n42-token"))
	}
	sample := func(p *caddyProcess, name string) float64 { return testkit.MetricValue(t, p.base()+"/metrics", name) }
	const (
		malformed   = `caddy_notify_control_messages_total{outcome="malformed"}`
		invalid     = `caddy_notify_control_messages_total{outcome="invalid_recipient"}`
		disconnects = `caddy_notify_control_messages_total{outcome="disconnect"}`
		revoked     = `caddy_notify_revoked_total{reason="disconnected"}`
	)

	rs.Publish(t, "control", `{"disconnect":`)
	rs.Publish(t, "control", `{"disconnect":["alice",true]}`)
	rs.Publish(t, "control", `{"disconnect":["alice",42]}`)
	for _, s := range append(alice, n42...) {
		s.Expect(t, revokedFrame(sse.RevokedDisconnected), testkit.Frame{Kind: testkit.FrameEnd})
	}
	for _, p := range instances {
		if m, i, d, r := sample(p, malformed), sample(p, invalid), sample(p, disconnects), sample(p, revoked); m != 1 || i != 1 || d != 1 || r != 2 {
			t.Errorf("instance %d: malformed %v, invalid %v, disconnects %v, revoked %v; want 1, 1, 1, 2 (alice and 42 here)", p.port, m, i, d, r)
		}
	}
	// bob was named by nothing valid: his streams go on.
	rs.Publish(t, defaultChannel, `{"recipient_id":"bob","n":1}`)
	for _, s := range bob {
		s.Expect(t, testkit.Frame{Kind: testkit.FrameEvent, Data: `{"recipient_id":"bob","n":1}`})
	}
	rs.Publish(t, "control", `{"disconnect":"*"}`)
	for _, s := range bob {
		s.Expect(t, revokedFrame(sse.RevokedDisconnected), testkit.Frame{Kind: testkit.FrameEnd})
	}
}

// The control channel must not be one of the channels messages come on.
func TestControlChannelMustDifferFromChannel(t *testing.T) {
	tests := []struct {
		h    Handler
		fail bool
	}{
		{Handler{AuthURL: "http://a/", ControlChannel: defaultChannel}, true},
		{Handler{Source: Source{Channel: "n", Partitions: 4}, AuthURL: "http://a/", ControlChannel: "n.3"}, true},
		{Handler{Source: Source{Channel: "n", Partitions: 4}, AuthURL: "http://a/", ControlChannel: "n"}, false},
		{Handler{Source: Source{Stream: defaultChannel}, AuthURL: "http://a/", ControlChannel: defaultChannel}, false}, // keys and channels are apart
	}
	for _, tt := range tests {
		err := tt.h.Validate()
		if got := err != nil && strings.Contains(err.Error(), "control_channel must not be a channel the messages come on"); got != tt.fail {
			t.Errorf("%+v: Validate() = %v, want the control_channel error: %v", tt.h, err, tt.fail)
		}
	}
}
