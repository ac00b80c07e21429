package notify

import (
	"fmt"
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
// counted; an invalid element of a list is dropped and counted, and the
// rest of the list applies.
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
		if m, i, d, r := sample(p, malformed), sample(p, invalid), sample(p, disconnects), sample(p, revoked); m != 1 || i != 1 || d != 2 || r != 2 {
			t.Errorf("instance %d: malformed %v, invalid %v, disconnects %v, revoked %v; want 1, 1, 2, 2 (alice and 42 here)", p.port, m, i, d, r)
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

// controlSetup serves a handler with groups and a control channel, and
// opens one stream for each token, once the channel is read.
func controlSetup(t *testing.T, tokens ...string) (rs *testkit.Redis, base string, streams map[string]*testkit.Stream) {
	t.Helper()
	rs = testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, groupUsers(map[string]string{
		"alice": `["org:7"]`, "bob": `["org:7","org:8"]`, "carol": `["org:8"]`, "dave": "",
	}))
	base = serve(t, rs, auth, `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		groups_field groups
		control_channel control
		heartbeat 0
	}`)
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	testkit.WaitFor(t, 10*time.Second, "the control channel read", func() bool {
		return c.PubSubNumSub(t.Context(), "control").Val()["control"] == 1
	})
	streams = map[string]*testkit.Stream{}
	for _, tok := range tokens {
		streams[tok] = openReady(t, base+"/events", tok+"-token")
	}
	return rs, base, streams
}

// expectOpen checks that each stream still delivers, in turn.
func expectOpen(t *testing.T, rs *testkit.Redis, streams map[string]*testkit.Stream, users ...string) {
	t.Helper()
	for _, u := range users {
		msg := fmt.Sprintf(`{"recipient_id":%q,"alive":1}`, u)
		rs.Publish(t, defaultChannel, msg)
		if ev := streams[u].Next(t, 5*time.Second); ev.Data != msg {
			t.Fatalf("%s: got %+v, want %s", u, ev, msg)
		}
	}
}

// TestControlStarOnlyAsWholeValue: "*" signs everyone out only as the
// whole value; in an array it is an invalid element, dropped and counted,
// and the rest of the array applies.
func TestControlStarOnlyAsWholeValue(t *testing.T) {
	rs, base, streams := controlSetup(t, "alice", "bob", "carol", "dave")
	before := testkit.MetricValue(t, base+"/metrics", `caddy_notify_control_messages_total{outcome="invalid_recipient"}`)
	invalid := func() float64 {
		return testkit.MetricValue(t, base+"/metrics", `caddy_notify_control_messages_total{outcome="invalid_recipient"}`) - before
	}
	rs.Publish(t, "control", `{"disconnect":["*"]}`)
	testkit.WaitFor(t, 5*time.Second, "the invalid element counted", func() bool { return invalid() == 1 })
	expectOpen(t, rs, streams, "alice", "bob", "carol", "dave")

	rs.Publish(t, "control", `{"disconnect":["*","alice"]}`)
	streams["alice"].Expect(t, revokedFrame(sse.RevokedDisconnected), testkit.Frame{Kind: testkit.FrameEnd})
	if got := invalid(); got != 2 {
		t.Errorf("invalid_recipient = %v, want 2", got)
	}
	expectOpen(t, rs, streams, "bob", "carol", "dave")

	rs.Publish(t, "control", `{"disconnect":"*"}`)
	for _, u := range []string{"bob", "carol", "dave"} {
		streams[u].Expect(t, revokedFrame(sse.RevokedDisconnected), testkit.Frame{Kind: testkit.FrameEnd})
	}
}

// TestControlDisconnectGroup: disconnect_group ends the streams of every
// member of the groups it names, and nobody else's; an invalid group is
// dropped and counted, and the rest applies.
func TestControlDisconnectGroup(t *testing.T) {
	rs, base, streams := controlSetup(t, "alice", "bob", "carol", "dave")
	samples := []string{
		`caddy_notify_control_messages_total{outcome="disconnect"}`,
		`caddy_notify_control_messages_total{outcome="invalid_group"}`,
		`caddy_notify_revoked_total{reason="disconnected"}`,
	}
	before := map[string]float64{}
	for _, sample := range samples {
		before[sample] = testkit.MetricValue(t, base+"/metrics", sample)
	}
	rs.Publish(t, "control", `{"disconnect_group":"org:9"}`)
	rs.Publish(t, "control", `{"disconnect_group":["org:7"]}`)
	for _, u := range []string{"alice", "bob"} {
		streams[u].Expect(t, revokedFrame(sse.RevokedDisconnected), testkit.Frame{Kind: testkit.FrameEnd})
	}
	expectOpen(t, rs, streams, "carol", "dave")
	rs.Publish(t, "control", `{"disconnect_group":[8,"","org:8"]}`)
	streams["carol"].Expect(t, revokedFrame(sse.RevokedDisconnected), testkit.Frame{Kind: testkit.FrameEnd})
	expectOpen(t, rs, streams, "dave")
	for i, want := range []float64{3, 1, 3} {
		if got := testkit.MetricValue(t, base+"/metrics", samples[i]) - before[samples[i]]; got != want {
			t.Errorf("%s rose by %v, want %v", samples[i], got, want)
		}
	}
}
