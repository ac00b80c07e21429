package notify

import (
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// onlineUntil returns user's score in the presence set, in Unix ms, or 0.
func onlineUntil(t *testing.T, rs *testkit.Redis, key, user string) int64 {
	t.Helper()
	c := rs.Client()
	defer c.Close()
	score, err := c.ZScore(t.Context(), key, user).Result()
	if err != nil {
		return 0
	}
	return int64(score)
}

func isOnline(t *testing.T, rs *testkit.Redis, key, user string) bool {
	return onlineUntil(t, rs, key, user) >= time.Now().UnixMilli()
}

// A user is online within a second of opening a first stream, stays online
// while any of its streams is open, and goes offline about three intervals
// after the last one closed.
func TestPresence(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice", "bob"))
	base := serve(t, rs, auth, `
	notify /events {
		redis {redis}
		auth_url {auth}
		presence online
		presence_interval 300ms
	}`)
	start := time.Now()
	a1 := testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token"))
	testkit.WaitFor(t, time.Second, "alice online", func() bool { return isOnline(t, rs, "online", "alice") })
	t.Logf("online %s after the stream opened", time.Since(start))
	a2 := testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token"))
	if isOnline(t, rs, "online", "bob") {
		t.Fatal("bob is online without a stream")
	}

	a1.Close()
	time.Sleep(1200 * time.Millisecond) // four intervals: alice's other stream keeps her online
	if !isOnline(t, rs, "online", "alice") {
		t.Fatal("alice went offline while a stream of hers was open")
	}
	a2.Close()
	closed := time.Now()
	testkit.WaitFor(t, 3*time.Second, "alice offline", func() bool { return !isOnline(t, rs, "online", "alice") })
	if d := time.Since(closed); d < 300*time.Millisecond {
		t.Errorf("offline %s after the last stream closed: sooner than one interval", d)
	} else {
		t.Logf("offline %s after the last stream closed (three intervals: 900ms)", d)
	}
	// Stale members are pruned at the next refresh.
	testkit.WaitFor(t, 3*time.Second, "alice pruned", func() bool { return onlineUntil(t, rs, "online", "alice") == 0 })
}

// Presence across two Caddy processes: a user is online within a second of
// a first stream on either, stays online while either instance holds one,
// and goes offline about three intervals after the last one closed, or
// after the instance that held it was killed with SIGKILL.
func TestPresenceAcrossInstances(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice", "bob"))
	routes := `
	notify /events {
		redis {redis}
		auth_url {auth}
		presence online
		presence_interval 300ms
		heartbeat 0
	}`
	a := startCaddyProcess(t, rs.URL(), auth.URL, routes)
	b := startCaddyProcess(t, rs.URL(), auth.URL, routes)
	online := func(user string) bool { return isOnline(t, rs, "online", user) }

	start := time.Now()
	onA := openStreamWhenUp(t, a.base()+"/events", "alice-token", "")
	testkit.WaitFor(t, time.Second, "alice online", func() bool { return online("alice") })
	t.Logf("online %s after the stream on a opened", time.Since(start))
	openStreamWhenUp(t, b.base()+"/events", "alice-token", "")
	onA.Close()
	// Four intervals: b's stream keeps alice online although a let go.
	for deadline := time.Now().Add(1200 * time.Millisecond); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !online("alice") {
			t.Fatal("alice went offline while instance b held her stream")
		}
	}
	b.kill()
	killed := time.Now()
	testkit.WaitFor(t, 3*time.Second, "alice offline after b was killed", func() bool { return !online("alice") })
	t.Logf("offline %s after the instance holding her stream was killed (three intervals: 900ms)", time.Since(killed))

	bob := openStreamWhenUp(t, a.base()+"/events", "bob-token", "")
	testkit.WaitFor(t, time.Second, "bob online", func() bool { return online("bob") })
	bob.Close()
	closed := time.Now()
	testkit.WaitFor(t, 3*time.Second, "bob offline after his last stream closed", func() bool { return !online("bob") })
	t.Logf("offline %s after the last stream closed", time.Since(closed))
}
