package notify

import "testing"

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
