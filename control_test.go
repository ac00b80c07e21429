package notify

import (
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
