package hub

import (
	"sync"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/streamid"
	"github.com/caddy-notify/notify/internal/testkit"
)

// TestResumeWaitsForALaggingReader resumes from an ID this instance's
// reader has not read yet (as when another instance delivered it): the
// resume waits for the reader instead of calling the ID unknown, and the
// stream continues after it without repeating it.
func TestResumeWaitsForALaggingReader(t *testing.T) {
	rs := testkit.StartRedis(t)
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	gate := make(chan struct{}, 1) // one token lets one paused read go
	var mu sync.Mutex
	paused := false
	hook := func() {
		mu.Lock()
		p := paused
		mu.Unlock()
		if p {
			<-gate
		}
	}
	hs := newTestSet(t, rs.URL(), Source{Stream: testStream, History: History{100, 1 << 20}}, Options{BeforeRead: hook})
	t.Cleanup(func() { close(gate) }) // before the set's Stop, which waits for the reader
	hb := hs.hubs[0]
	ix := hb.Attach(index.Key{DataField: "data", Fields: message.Fields{Recipient: "recipient_id"}})
	if !hb.WaitUp(t.Context(), 5*time.Second) {
		t.Fatal("reader not up")
	}
	xadd(t, c, numberedMsg("alice", 1))
	reader := hb.reader.(*streamReader)
	testkit.WaitFor(t, 5*time.Second, "entry 1 read", func() bool {
		reader.mu.Lock()
		defer reader.mu.Unlock()
		return reader.win.n == 1
	})
	mu.Lock()
	paused = true
	mu.Unlock()
	// The reader finishes its current XREAD BLOCK (up to readBlock), then
	// waits at the gate; entry 2 is added meanwhile.
	time.Sleep(readBlock + 200*time.Millisecond)
	id2, _ := streamid.Parse(xadd(t, c, numberedMsg("alice", 2)))

	type result struct {
		res Preamble
		err error
	}
	done := make(chan result, 1)
	sub, woken := parkedSubscriber("alice")
	go func() {
		res, err := hb.Register(t.Context(), ix, sub, nil, &id2, 100)
		done <- result{res, err}
	}()
	time.Sleep(200 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("resume returned before the reader caught up: %+v", r)
	default:
	}
	gate <- struct{}{} // let the reader read entry 2
	var r result
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("resume still waiting")
	}
	if r.err != nil || r.res.reset != nil || len(r.res.replay) != 0 {
		t.Fatalf("resume = %+v, %v; want nothing to replay and no reset", r.res, r.err)
	}
	mu.Lock()
	paused = false
	mu.Unlock()
	gate <- struct{}{}
	id3 := xadd(t, c, numberedMsg("alice", 3))
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("no live event after the resume")
	}
	got, _, _ := sub.Take(nil)
	if len(got) != 1 || frameID(got[0]) != id3 {
		t.Fatalf("live events %v, want only entry 3 (%s)", got, id3)
	}
}
