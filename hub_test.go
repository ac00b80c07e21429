package notify

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// drain returns the events queued to s.
func drain(s *subscriber) []string {
	var out []string
	for _, ev := range s.take(nil) {
		out = append(out, string(ev.wire))
	}
	return out
}

func TestIndexDeliver(t *testing.T) {
	ix := newIndex("recipient_id")
	alice1 := newSubscriber("alice", false, nil, 10)
	alice2 := newSubscriber("alice", true, nil, 10)
	bob := newSubscriber("bob", true, nil, 10)
	carol := newSubscriber("carol", false, nil, 10)
	for _, s := range []*subscriber{alice1, alice2, bob, carol} {
		ix.add(s)
	}
	ev := func(s string) *event { return &event{wire: []byte(s)} }

	c := ix.deliver([]string{"alice"}, false, ev("a"))
	if c.delivered != 2 || c.overflow != 0 {
		t.Errorf("to alice: %+v", c)
	}
	c = ix.deliver(nil, true, ev("all"))
	if c.delivered != 2 { // alice2 and bob have broadcast on
		t.Errorf("broadcast: %+v", c)
	}
	c = ix.deliver([]string{"carol"}, true, ev("all+carol"))
	if c.delivered != 3 {
		t.Errorf("broadcast plus carol: %+v", c)
	}
	c = ix.deliver([]string{"nobody"}, false, ev("x"))
	if c.delivered != 0 {
		t.Errorf("to nobody: %+v", c)
	}
	for s, want := range map[*subscriber]string{
		alice1: "[a]", alice2: "[a all all+carol]", bob: "[all all+carol]", carol: "[all+carol]",
	} {
		if got := fmt.Sprint(drain(s)); got != want {
			t.Errorf("%s got %s, want %s", s.user, got, want)
		}
	}

	ix.remove(alice1)
	ix.remove(alice1) // twice is harmless
	if n := ix.count(); n != 3 {
		t.Errorf("%d streams after removal, want 3", n)
	}
}

func TestIndexOverflowClosesOnlyTheFullStream(t *testing.T) {
	ix := newIndex("recipient_id")
	slow := newSubscriber("alice", false, nil, 3)
	fast := newSubscriber("alice", false, nil, 3)
	ix.add(slow)
	ix.add(fast)
	var overflow int
	for i := range 5 {
		c := ix.deliver([]string{"alice"}, false, &event{wire: []byte(strconv.Itoa(i))})
		overflow += c.overflow
		drain(fast)
	}
	if overflow != 1 {
		t.Errorf("overflow %d, want 1", overflow)
	}
	if _, ok := <-slow.wake; ok {
		if _, ok := <-slow.wake; ok {
			t.Error("slow stream's wake channel not closed")
		}
	}
	if n := ix.count(); n != 1 {
		t.Errorf("%d streams left, want 1", n)
	}
	if delivered, overflow := slow.push(pingEvent); delivered || overflow {
		t.Error("push to a closed stream must be a no-op")
	}
}

func TestSubscriberPing(t *testing.T) {
	s := newSubscriber("a", false, nil, 4)
	s.ping()
	if got := drain(s); len(got) != 1 || got[0] != ": ping\n\n" {
		t.Fatalf("idle stream: %q", got)
	}
	s.push(&event{wire: []byte("e")})
	drain(s)
	s.ping() // the stream was busy since the last beat: no ping
	if got := drain(s); len(got) != 0 {
		t.Fatalf("busy stream pinged: %q", got)
	}
	s.ping()
	if got := drain(s); len(got) != 1 {
		t.Fatalf("stream idle for a whole interval not pinged: %q", got)
	}
}

// TestHubLifecycleLeaksNothing runs a hub against a real Redis, delivers a
// message, and destroys it: no goroutine may remain.
func TestHubLifecycleLeaksNothing(t *testing.T) {
	rs := startRedis(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	opts, err := redisOptions(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	hb := newHub(opts, source{channel: "ch"}, zap.NewNop())
	ix := hb.attach(indexKey{recipientField: "to"})
	s := newSubscriber("u1", false, nil, 8)
	ix.add(s)
	if !hb.waitUp(t.Context(), 5*time.Second) {
		t.Fatal("hub did not subscribe")
	}
	rs.publish(t, "ch", `{"to":"u1","n":1}`)
	select {
	case <-s.wake:
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
	if got := drain(s); len(got) != 1 || got[0] != "data: {\"to\":\"u1\",\"n\":1}\n\n" {
		t.Fatalf("delivered %q", got)
	}
	hb.detach(ix)
	if _, ok := <-s.wake; ok {
		t.Error("detaching the last user of an index must end its streams")
	}
	if err := hb.Destruct(); err != nil {
		t.Fatal(err)
	}
}

// TestHubDestructWhileRedisDown checks that a hub stuck reconnecting stops
// promptly.
func TestHubDestructWhileRedisDown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	opts, _ := redisOptions(fmt.Sprintf("redis://127.0.0.1:%d", freePort(t)))
	hb := newHub(opts, source{channel: "ch"}, zap.NewNop())
	if hb.waitUp(t.Context(), 300*time.Millisecond) {
		t.Fatal("up without a server")
	}
	done := make(chan error, 1)
	go func() { done <- hb.Destruct() }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Destruct hangs while reconnecting")
	}
}

// TestHubLogsEachStateChangeOnce watches the hub's log while Redis is down
// at start, comes up, and goes away again: one line per change, however many
// reconnection attempts happen in between.
func TestHubLogsEachStateChangeOnce(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	port := freePort(t)
	opts, _ := redisOptions(fmt.Sprintf("redis://127.0.0.1:%d", port))
	hb := newHub(opts, source{channel: "ch"}, zap.New(core))
	t.Cleanup(func() { _ = hb.Destruct() })

	// Several backoff rounds (100, 200, 400 ms …) pass while Redis is down.
	waitFor(t, 5*time.Second, "first failure logged", func() bool { return logs.Len() >= 1 })
	time.Sleep(800 * time.Millisecond)
	rs := &redisServer{t: t, port: port, args: startRedisArgs(t, port)}
	rs.start()
	t.Cleanup(rs.stop)
	if !hb.waitUp(t.Context(), 10*time.Second) {
		t.Fatal("hub did not subscribe once Redis came up")
	}
	rs.stop()
	waitFor(t, 5*time.Second, "loss logged", func() bool { return logs.Len() >= 3 })
	time.Sleep(800 * time.Millisecond)

	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Level.String()+" "+e.Message)
	}
	want := []string{
		"warn redis subscription unavailable; retrying",
		"info redis subscription established",
		"warn redis subscription unavailable; retrying",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("log lines\n%q\nwant\n%q", got, want)
	}
}
