package index

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/sse"
)

// drain returns what was queued to s, as a writer would take it: until the
// queue is empty (the writer then parks: the next frame wakes s.w). A
// message frame is returned as its data, a comment as it is written.
func drain(s *Subscriber) []string {
	var out []string
	for {
		batch, _, open := s.Take(nil)
		if !open || len(batch) == 0 {
			return out
		}
		for _, f := range batch {
			// The text of a message frame, or a comment as it is.
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(string(f.Bytes()), "data: "), "\n\n"))
		}
	}
}

func TestIndexDeliver(t *testing.T) {
	ix := New(Key{Fields: message.Fields{Recipient: "recipient_id"}})
	alice1 := NewSubscriber("alice", false, NewOwner(QueueLimit{Events: 10}))
	alice2 := NewSubscriber("alice", true, NewOwner(QueueLimit{Events: 10}))
	bob := NewSubscriber("bob", true, NewOwner(QueueLimit{Events: 10}))
	carol := NewSubscriber("carol", false, NewOwner(QueueLimit{Events: 10}))
	for _, s := range []*Subscriber{alice1, alice2, bob, carol} {
		ix.Add(s)
	}
	ev := func(s string) *sse.Frame { return sse.Message("", []byte(s)) }

	c := deliver(ix, []string{"alice"}, false, ev("a"))
	if c.Delivered != 2 || c.Overflow != 0 {
		t.Errorf("to alice: %+v", c)
	}
	c = deliver(ix, nil, true, ev("all"))
	if c.Delivered != 2 { // alice2 and bob have broadcast on
		t.Errorf("broadcast: %+v", c)
	}
	c = deliver(ix, []string{"carol"}, true, ev("all+carol"))
	if c.Delivered != 3 {
		t.Errorf("broadcast plus carol: %+v", c)
	}
	c = deliver(ix, []string{"nobody"}, false, ev("x"))
	if c.Delivered != 0 {
		t.Errorf("to nobody: %+v", c)
	}
	for s, want := range map[*Subscriber]string{
		alice1: "[a]", alice2: "[a all all+carol]", bob: "[all all+carol]", carol: "[all+carol]",
	} {
		if got := fmt.Sprint(drain(s)); got != want {
			t.Errorf("%s got %s, want %s", s.user, got, want)
		}
	}

	ix.Remove(alice1)
	ix.Remove(alice1) // twice is harmless
	if n := countStreams(ix); n != 3 {
		t.Errorf("%d streams after removal, want 3", n)
	}
}

func TestIndexOverflowClosesOnlyTheFullStream(t *testing.T) {
	ix := New(Key{Fields: message.Fields{Recipient: "recipient_id"}})
	slow := NewSubscriber("alice", false, NewOwner(QueueLimit{Events: 3}))
	fast := NewSubscriber("alice", false, NewOwner(QueueLimit{Events: 3}))
	ix.Add(slow)
	ix.Add(fast)
	var overflow int
	for i := range 5 {
		c := deliver(ix, []string{"alice"}, false, sse.Message("", []byte(strconv.Itoa(i))))
		overflow += c.Overflow
		drain(fast)
	}
	if overflow != 1 {
		t.Errorf("overflow %d, want 1", overflow)
	}
	if !slow.IsClosed() {
		t.Error("slow stream not closed")
	}
	if n := countStreams(ix); n != 1 {
		t.Errorf("%d streams left, want 1", n)
	}
	if delivered, overflow := slow.Push(sse.Ping); delivered || overflow {
		t.Error("push to a closed stream must be a no-op")
	}
}

// countStreams returns the number of streams in ix.
func countStreams(ix *Index) int {
	n := 0
	for i := range NumShards {
		ix.EachInShard(i, func(*Subscriber) { n++ })
	}
	return n
}

// deliver is a delivery to users (sorted), and to every broadcast stream
// with broadcast, of an index that holds every partition.
func deliver(ix *Index, users []string, broadcast bool, f *sse.Frame) Counts {
	return ix.Deliver(&message.Route{Users: users, Broadcast: broadcast}, users, nil, f)
}
