package hub

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/testkit"
)

// TestHubLifecycleLeaksNothing runs a hub against a real Redis, delivers a
// message, and destroys it: no goroutine may remain.
func TestHubLifecycleLeaksNothing(t *testing.T) {
	rs := testkit.StartRedis(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	client := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	hs := NewSet(client, Source{Channel: "ch", MaxMessageSize: 1 << 20}, Options{Logger: zap.NewNop(), Metrics: metrics.New()})
	hb := hs.hubs[0]
	ix := hb.Attach(index.Key{Fields: message.Fields{Recipient: "to"}})
	s, woken := parkedSubscriber("u1")
	ix.Add(s)
	if !hb.WaitUp(t.Context(), 5*time.Second) {
		t.Fatal("hub did not subscribe")
	}
	rs.Publish(t, "ch", `{"to":"u1","n":1}`)
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
	if got := drain(s); len(got) != 1 || got[0] != "data: {\"to\":\"u1\",\"n\":1}\n\n" {
		t.Fatalf("delivered %q", got)
	}
	hb.Detach(ix)
	select {
	case <-woken: // the parked writer is woken to end the stream
	default:
		t.Error("detaching the last user of an index must wake its streams' writers")
	}
	if !s.IsClosed() {
		t.Error("detaching the last user of an index must end its streams")
	}
	if err := hs.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestHubStopWhileRedisDown checks that a hub stuck reconnecting stops
// promptly.
func TestHubStopWhileRedisDown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rs := testkit.NewRedis(t, testkit.FreePort(t)) // never started
	client := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer client.Close()
	hs := NewSet(client, Source{Channel: "ch", MaxMessageSize: 1 << 20}, Options{Logger: zap.NewNop(), Metrics: metrics.New()})
	hb := hs.hubs[0]
	if hb.WaitUp(t.Context(), 300*time.Millisecond) {
		t.Fatal("up without a server")
	}
	done := make(chan error, 1)
	go func() { done <- hs.Stop() }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Stop hangs while reconnecting")
	}
}

// TestHubLogsEachStateChangeOnce watches the hub's log while Redis is down
// at start, comes up, and goes away again: one line per change, however many
// reconnection attempts happen in between.
func TestHubLogsEachStateChangeOnce(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	rs := testkit.NewRedis(t, testkit.FreePort(t)) // started below
	hs := newTestSet(t, rs.URL(), Source{Channel: "ch"}, Options{Logger: zap.New(core)})
	hb := hs.hubs[0]

	// Several backoff rounds (100, 200, 400 ms …) pass while Redis is down.
	testkit.WaitFor(t, 5*time.Second, "first failure logged", func() bool { return logs.Len() >= 1 })
	time.Sleep(800 * time.Millisecond)
	rs.Start()
	if !hb.WaitUp(t.Context(), 10*time.Second) {
		t.Fatal("hub did not subscribe once Redis came up")
	}
	rs.Stop()
	testkit.WaitFor(t, 5*time.Second, "loss logged", func() bool { return logs.Len() >= 3 })
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
