package index

import (
	"testing"

	"github.com/caddy-notify/notify/internal/sse"
)

func TestSubscriberPing(t *testing.T) {
	s := NewSubscriber("a", false, NewOwner(QueueLimit{Events: 4}))
	s.Ping()
	if got := drain(s); len(got) != 1 || got[0] != ": ping" {
		t.Fatalf("idle stream: %q", got)
	}
	s.Push(sse.Message("", []byte("e")))
	drain(s)
	s.Ping() // the stream was busy since the last beat: no ping
	if got := drain(s); len(got) != 0 {
		t.Fatalf("busy stream pinged: %q", got)
	}
	s.Ping()
	if got := drain(s); len(got) != 1 {
		t.Fatalf("stream idle for a whole interval not pinged: %q", got)
	}
}

// queue_bytes counts what waits and what the writer holds; one event is
// always let through, however large.
func TestSubscriberQueueBytes(t *testing.T) {
	kib := sse.Message("", make([]byte, 1024-len("data: \n\n")))
	s := NewSubscriber("a", false, NewOwner(QueueLimit{Events: 100, Bytes: 3 * 1024}))
	for i := range 3 {
		if delivered, overflow := s.Push(kib); !delivered || overflow {
			t.Fatalf("push %d: delivered %v, overflow %v", i, delivered, overflow)
		}
	}
	batch, _, _ := s.Take(nil)
	if len(batch) != 3 {
		t.Fatalf("took %d events, want 3", len(batch))
	}
	// The writer still holds 3 KiB: nothing more fits until it is written
	// (its next take).
	if delivered, overflow := s.Push(kib); delivered || !overflow {
		t.Fatalf("push past queue_bytes while the writer holds 3 KiB: delivered %v, overflow %v; want overflow", delivered, overflow)
	}
	s = NewSubscriber("a", false, NewOwner(QueueLimit{Events: 100, Bytes: 3 * 1024}))
	for range 3 {
		s.Push(kib)
	}
	s.Take(nil)
	s.Take(nil) // the writer wrote them and parks
	for i := range 3 {
		if delivered, _ := s.Push(kib); !delivered {
			t.Fatalf("push %d after written: not delivered", i)
		}
	}
	s.Take(nil)
	if delivered, overflow := s.Push(kib); delivered || !overflow {
		t.Fatalf("push past queue_bytes while writing: delivered %v, overflow %v; want overflow", delivered, overflow)
	}
	if !s.IsClosed() {
		t.Fatal("overflowing stream not closed")
	}

	big := sse.Message("", make([]byte, 10*1024))
	s = NewSubscriber("a", false, NewOwner(QueueLimit{Events: 100, Bytes: 3 * 1024}))
	if delivered, _ := s.Push(big); !delivered {
		t.Fatal("one event larger than queue_bytes on an empty queue was refused")
	}
	if _, overflow := s.Push(kib); !overflow {
		t.Fatal("a second event behind one larger than queue_bytes was accepted")
	}
}
