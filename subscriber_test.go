package notify

import "testing"

func TestSubscriberPing(t *testing.T) {
	s := newSubscriber("a", false, nil, queueLimit{events: 4})
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

// queue_bytes counts what waits and what the writer holds; one event is
// always let through, however large.
func TestSubscriberQueueBytes(t *testing.T) {
	kib := &event{wire: make([]byte, 1024)}
	s := newSubscriber("a", false, nil, queueLimit{events: 100, bytes: 3 * 1024})
	for i := range 3 {
		if delivered, overflow := s.push(kib); !delivered || overflow {
			t.Fatalf("push %d: delivered %v, overflow %v", i, delivered, overflow)
		}
	}
	batch, _, _ := s.take(nil)
	if len(batch) != 3 {
		t.Fatalf("took %d events, want 3", len(batch))
	}
	// The writer still holds 3 KiB: nothing more fits until it is written
	// (its next take).
	if delivered, overflow := s.push(kib); delivered || !overflow {
		t.Fatalf("push past queue_bytes while the writer holds 3 KiB: delivered %v, overflow %v; want overflow", delivered, overflow)
	}
	s = newSubscriber("a", false, nil, queueLimit{events: 100, bytes: 3 * 1024})
	for range 3 {
		s.push(kib)
	}
	s.take(nil)
	s.take(nil) // the writer wrote them and parks
	for i := range 3 {
		if delivered, _ := s.push(kib); !delivered {
			t.Fatalf("push %d after written: not delivered", i)
		}
	}
	s.take(nil)
	if delivered, overflow := s.push(kib); delivered || !overflow {
		t.Fatalf("push past queue_bytes while writing: delivered %v, overflow %v; want overflow", delivered, overflow)
	}
	if !s.isClosed() {
		t.Fatal("overflowing stream not closed")
	}

	big := &event{wire: make([]byte, 10*1024)}
	s = newSubscriber("a", false, nil, queueLimit{events: 100, bytes: 3 * 1024})
	if delivered, _ := s.push(big); !delivered {
		t.Fatal("one event larger than queue_bytes on an empty queue was refused")
	}
	if _, overflow := s.push(kib); !overflow {
		t.Fatal("a second event behind one larger than queue_bytes was accepted")
	}
}
