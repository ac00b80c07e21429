package notify

import (
	"math/rand/v2"
	"sync"
)

// subscriber is the queue of one open stream, between the dispatcher that
// fills it and the stream's writer that empties it. While idle it costs this
// struct alone: events wait in q, a slice that grows only while a burst is
// queued, and no writer runs. The first event queued while the writer is
// parked wakes it (waker.wake): a blocked write loop on HTTP/2, a new
// short-lived writer goroutine on a hijacked HTTP/1 connection (pump.go).
type subscriber struct {
	user      string       // canonical user id
	group     *streamGroup // its handler's
	w         waker        // nil in tests that take from the queue themselves
	limit     queueLimit
	broadcast bool  // receives messages addressed to "*"
	beatSlot  uint8 // which tick of its shard's turn visits it (see spread)

	// Fields ordered for size: an idle stream's subscriber is 112 bytes.
	mu     sync.Mutex
	busy   bool // an event was queued since the last heartbeat
	closed bool // no more events: the stream must end
	final  bool // q ends with the stream's last frame (revoked): nothing more is queued
	// parked is set while no writer runs: whoever queues the next event
	// (or closes the queue) clears it and wakes one. A new subscriber is
	// not parked: its stream's first write is under way.
	parked  bool
	q       []*event
	queued  int // bytes of the frames in q
	writing int // bytes of the frames taken and not yet written
}

// waker runs a stream's writer, which then takes from the queue until it
// is empty (and parks) or the stream ends.
type waker interface {
	wake()
}

// queueLimit bounds what may wait for one stream; reaching either bound
// closes it.
type queueLimit struct {
	events int // queue_size
	bytes  int // queue_bytes, counting what the writer holds; 0: no bound
}

func newSubscriber(user string, broadcast bool, group *streamGroup, limit queueLimit) *subscriber {
	return &subscriber{
		user: user, broadcast: broadcast, group: group, limit: limit,
		beatSlot: uint8(rand.N(maxBeatSlots)),
	}
}

// push queues ev. delivered reports that it was queued; overflow that the
// queue was full, in which case the subscriber is now closed (the client
// reconnects) and the caller counts a drop. Both are false when the
// subscriber was already closed.
func (s *subscriber) push(ev *event) (delivered, overflow bool) {
	s.mu.Lock()
	if s.closed || s.final {
		s.mu.Unlock()
		return false, false
	}
	// One event is always let through, however large: max_message_size
	// bounds it, and queue_bytes is at least that.
	held := s.queued + s.writing
	if len(s.q) >= s.limit.events || (s.limit.bytes > 0 && held > 0 && held+len(ev.wire) > s.limit.bytes) {
		s.closeLocked()
		s.unlockAndWake()
		return false, true
	}
	s.q = append(s.q, ev)
	s.queued += len(ev.wire)
	s.busy = true
	s.unlockAndWake()
	return true, false
}

// ping queues a heartbeat unless the stream carried an event since the last
// one or still has events queued (they will be written soon anyway).
func (s *subscriber) ping() {
	s.mu.Lock()
	if s.closed || s.final || len(s.q) > 0 {
		s.mu.Unlock()
		return
	}
	if s.busy {
		s.busy = false
		s.mu.Unlock()
		return
	}
	s.q = append(s.q, pingEvent)
	s.unlockAndWake()
}

// unlockAndWake unlocks s and, when the writer was parked, wakes it: the
// queue holds something or is closed. The writer runs at most once at a
// time, since only the one who unparks wakes it.
func (s *subscriber) unlockAndWake() {
	wake := s.parked && s.w != nil
	if wake {
		s.parked = false
	}
	s.mu.Unlock()
	if wake {
		s.w.wake()
	}
}

// revoke replaces whatever waits with ev, the stream's last frame: the
// writer writes it and ends the stream. It reports false when the stream
// was already ending.
func (s *subscriber) revoke(ev *event) bool {
	s.mu.Lock()
	if s.closed || s.final {
		s.mu.Unlock()
		return false
	}
	clear(s.q)
	s.q = append(s.q[:0], ev)
	s.queued = len(ev.wire)
	s.final = true
	s.unlockAndWake()
	return true
}

// take is the writer's: the events written last are done (they stop
// counting against queue_bytes), and the queued ones move into buf (reused
// between calls) and count until the next take. last reports that they end
// the stream. open is false when the stream must end now (closed). With
// nothing queued, the writer parks: batch is empty, and the next event
// queued wakes it again.
func (s *subscriber) take(buf []*event) (batch []*event, last, open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writing = 0
	if s.closed {
		return buf[:0], false, false
	}
	if len(s.q) == 0 {
		s.parked = true
		s.q = nil // no array is kept per idle stream
		return buf[:0], false, true
	}
	last = s.final
	buf, s.q = s.q, buf[:0]
	s.writing, s.queued = s.queued, 0
	if cap(s.q) > 64 {
		s.q = nil // let a burst's backing array go instead of keeping it per stream
	}
	return buf, last, true
}

// close ends the stream: nothing more is queued, and a parked writer is
// woken to end it.
func (s *subscriber) close() {
	s.mu.Lock()
	s.closeLocked()
	s.unlockAndWake()
}

// isClosed reports whether the stream was closed (by the hub, an overflow,
// its client leaving or its config stopping).
func (s *subscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *subscriber) closeLocked() {
	if !s.closed {
		s.closed = true
		s.q, s.queued = nil, 0
	}
}
