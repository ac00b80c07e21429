package notify

import (
	"math/rand/v2"
	"sync"
)

// subscriber is the queue of one open stream, between the dispatcher that
// fills it and the stream's writer that empties it. It costs a small struct
// and a one-slot channel while idle: events wait in q, a slice that grows
// only while a burst is queued, so no per-stream buffer is reserved up front.
type subscriber struct {
	user      string       // canonical user id
	broadcast bool         // receives messages addressed to "*"
	group     *streamGroup // its handler's
	beatSlot  uint8        // which tick of its shard's turn visits it (see spread)
	limit     queueLimit

	mu      sync.Mutex
	q       []*event
	queued  int           // bytes of the frames in q
	writing int           // bytes of the frames taken and not yet written
	busy    bool          // an event was queued since the last heartbeat
	closed  bool          // no more events: the stream must end
	final   bool          // q ends with the stream's last frame (revoked): nothing more is queued
	wake    chan struct{} // one slot; signalled when q becomes non-empty, closed with closed
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
		beatSlot: uint8(rand.N(maxBeatSlots)), wake: make(chan struct{}, 1),
	}
}

// push queues ev. delivered reports that it was queued; overflow that the
// queue was full, in which case the subscriber is now closed (the client
// reconnects) and the caller counts a drop. Both are false when the
// subscriber was already closed.
func (s *subscriber) push(ev *event) (delivered, overflow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.final {
		return false, false
	}
	// One event is always let through, however large: max_message_size
	// bounds it, and queue_bytes is at least that.
	held := s.queued + s.writing
	if len(s.q) >= s.limit.events || (s.limit.bytes > 0 && held > 0 && held+len(ev.wire) > s.limit.bytes) {
		s.closeLocked()
		return false, true
	}
	s.q = append(s.q, ev)
	s.queued += len(ev.wire)
	s.busy = true
	s.signalLocked()
	return true, false
}

// ping queues a heartbeat unless the stream carried an event since the last
// one or still has events queued (they will be written soon anyway).
func (s *subscriber) ping() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.final || len(s.q) > 0 {
		return
	}
	if s.busy {
		s.busy = false
		return
	}
	s.q = append(s.q, pingEvent)
	s.signalLocked()
}

func (s *subscriber) signalLocked() {
	select {
	case s.wake <- struct{}{}:
	default: // already signalled
	}
}

// revoke replaces whatever waits with ev, the stream's last frame: the
// writer writes it and ends the stream. It reports false when the stream
// was already ending.
func (s *subscriber) revoke(ev *event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.final {
		return false
	}
	clear(s.q)
	s.q = append(s.q[:0], ev)
	s.queued = len(ev.wire)
	s.final = true
	s.signalLocked()
	return true
}

// take moves the queued events into buf (reused between calls) and returns
// it; they count against queue_bytes until written is called. last reports
// that they end the stream.
func (s *subscriber) take(buf []*event) (batch []*event, last bool) {
	s.mu.Lock()
	last = s.final
	buf, s.q = s.q, buf[:0]
	s.writing, s.queued = s.queued, 0
	if cap(s.q) > 64 {
		s.q = nil // let a burst's backing array go instead of keeping it per stream
	}
	s.mu.Unlock()
	return buf, last
}

// written reports that the events last taken have been written.
func (s *subscriber) written() {
	s.mu.Lock()
	s.writing = 0
	s.mu.Unlock()
}

// close ends the stream: its wake channel is closed and nothing more is queued.
func (s *subscriber) close() {
	s.mu.Lock()
	s.closeLocked()
	s.mu.Unlock()
}

func (s *subscriber) closeLocked() {
	if !s.closed {
		s.closed = true
		s.q, s.queued = nil, 0
		close(s.wake)
	}
}
