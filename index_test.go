package notify

import (
	"fmt"
	"strconv"
	"testing"
)

// drain returns the events queued to s, as a writer would take them: until
// the queue is empty (the writer then parks: the next event wakes s.w).
func drain(s *subscriber) []string {
	var out []string
	for {
		batch, _, open := s.take(nil)
		if !open || len(batch) == 0 {
			return out
		}
		for _, ev := range batch {
			out = append(out, string(ev.wire))
		}
	}
}

// chanWaker stands for a stream's writer in tests: a wake is a signal on
// the channel.
type chanWaker chan struct{}

func (c chanWaker) wake() {
	select {
	case c <- struct{}{}:
	default:
	}
}

// wakeOnEvents makes s signal the returned channel when something is
// queued (or it is closed) while no writer runs, as it wakes a parked
// stream's writer.
func wakeOnEvents(s *subscriber) chanWaker {
	w := make(chanWaker, 1)
	s.mu.Lock()
	s.w, s.parked = w, true
	s.mu.Unlock()
	return w
}

func TestIndexDeliver(t *testing.T) {
	ix := newIndex(indexKey{recipientField: "recipient_id"})
	alice1 := newSubscriber("alice", false, nil, queueLimit{events: 10})
	alice2 := newSubscriber("alice", true, nil, queueLimit{events: 10})
	bob := newSubscriber("bob", true, nil, queueLimit{events: 10})
	carol := newSubscriber("carol", false, nil, queueLimit{events: 10})
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
	if n := countStreams(ix); n != 3 {
		t.Errorf("%d streams after removal, want 3", n)
	}
}

func TestIndexOverflowClosesOnlyTheFullStream(t *testing.T) {
	ix := newIndex(indexKey{recipientField: "recipient_id"})
	slow := newSubscriber("alice", false, nil, queueLimit{events: 3})
	fast := newSubscriber("alice", false, nil, queueLimit{events: 3})
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
	if !slow.isClosed() {
		t.Error("slow stream not closed")
	}
	if n := countStreams(ix); n != 1 {
		t.Errorf("%d streams left, want 1", n)
	}
	if delivered, overflow := slow.push(pingEvent); delivered || overflow {
		t.Error("push to a closed stream must be a no-op")
	}
}
