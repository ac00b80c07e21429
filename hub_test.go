package notify

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestHubLifecycleLeaksNothing runs a hub against a real Redis, delivers a
// message, and destroys it: no goroutine may remain.
func TestHubLifecycleLeaksNothing(t *testing.T) {
	rs := startRedis(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	opts, err := redisOptions(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	hs := newHubSet(opts, source{channel: "ch"}, zap.NewNop())
	hb := hs.hubs[0]
	ix := hb.attach(indexKey{recipientField: "to"})
	s := newSubscriber("u1", false, nil, queueLimit{events: 8})
	woken := wakeOnEvents(s)
	ix.add(s)
	if !hb.waitUp(t.Context(), 5*time.Second) {
		t.Fatal("hub did not subscribe")
	}
	rs.publish(t, "ch", `{"to":"u1","n":1}`)
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
	if got := drain(s); len(got) != 1 || got[0] != "data: {\"to\":\"u1\",\"n\":1}\n\n" {
		t.Fatalf("delivered %q", got)
	}
	hb.detach(ix)
	select {
	case <-woken: // the parked writer is woken to end the stream
	default:
		t.Error("detaching the last user of an index must wake its streams' writers")
	}
	if !s.isClosed() {
		t.Error("detaching the last user of an index must end its streams")
	}
	if err := hs.Destruct(); err != nil {
		t.Fatal(err)
	}
}

// TestHubDestructWhileRedisDown checks that a hub stuck reconnecting stops
// promptly.
func TestHubDestructWhileRedisDown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rs := newRedisServer(t, freePort(t)) // never started
	opts, _ := redisOptions(rs.URL())
	hs := newHubSet(opts, source{channel: "ch"}, zap.NewNop())
	hb := hs.hubs[0]
	if hb.waitUp(t.Context(), 300*time.Millisecond) {
		t.Fatal("up without a server")
	}
	done := make(chan error, 1)
	go func() { done <- hs.Destruct() }()
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
	rs := newRedisServer(t, freePort(t)) // started below
	opts, _ := redisOptions(rs.URL())
	hs := newHubSet(opts, source{channel: "ch"}, zap.New(core))
	hb := hs.hubs[0]
	t.Cleanup(func() { _ = hs.Destruct() })

	// Several backoff rounds (100, 200, 400 ms …) pass while Redis is down.
	waitFor(t, 5*time.Second, "first failure logged", func() bool { return logs.Len() >= 1 })
	time.Sleep(800 * time.Millisecond)
	rs.start()
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
