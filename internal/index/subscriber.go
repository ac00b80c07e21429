package index

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/caddy-notify/notify/internal/sse"
)

// Subscriber is the queue of one open stream, between the dispatcher that
// fills it and the stream's writer that empties it. While idle it costs this
// struct alone: frames wait in q, a slice that grows only while a burst is
// queued, and no writer runs. The first frame queued while the writer is
// parked wakes it (Waker.Wake): the stream package runs a writer for it
// until the queue is empty again.
type Subscriber struct {
	user      string
	owner     *Owner
	groups    atomic.Pointer[[]string] // sorted; nil: none
	w         Waker                    // nil in tests that take from the queue themselves
	broadcast bool                     // receives messages addressed to "*"
	beatSlot  uint8                    // which tick of its shard's turn visits it (see BeatSlots)

	// Fields ordered for size: an idle stream's subscriber is 112 bytes.
	mu     sync.Mutex
	busy   bool // a frame was queued since the last heartbeat
	closed bool // no more frames: the stream must end
	final  bool // q ends with the stream's last frame: nothing more is queued
	// parked is set while no writer runs: whoever queues the next frame
	// (or closes the queue) clears it and wakes one. A new subscriber is
	// not parked: its stream's first write is under way.
	parked  bool
	q       []*sse.Frame
	queued  int // bytes of the frames in q
	writing int // bytes of the frames taken and not yet written
}

// Waker runs a stream's writer, which then takes from the queue until it
// is empty (and parks) or the stream ends.
type Waker interface {
	Wake()
}

// QueueLimit bounds what may wait for one stream; reaching either bound
// closes it.
type QueueLimit struct {
	Events int // queue_size
	Bytes  int // queue_bytes, counting what the writer holds; 0: no bound
}

// Owner is the handler whose streams a subscriber belongs to, in an index
// that several handlers may share (same Redis source and fields): its
// heartbeat and its control channel act on its own streams only, and its
// queue limits bound them. The limits may change while the streams run.
type Owner struct {
	limit atomic.Pointer[QueueLimit]
}

// NewOwner returns an owner whose streams' queues are bounded by limit.
func NewOwner(limit QueueLimit) *Owner {
	o := new(Owner)
	o.SetLimit(limit)
	return o
}

// SetLimit bounds the queues of the owner's streams from now on.
func (o *Owner) SetLimit(limit QueueLimit) { o.limit.Store(&limit) }

// BeatSlots is how many ticks, at most, share one shard's turn of the
// heartbeat: each subscriber is given one at random, so that the streams of
// a shard are not all pinged at one instant.
const BeatSlots = 16

// NewSubscriber returns the queue of a new stream of user, owned by owner.
// With broadcast, it receives the messages addressed to "*".
func NewSubscriber(user string, broadcast bool, owner *Owner) *Subscriber {
	return &Subscriber{
		user: user, broadcast: broadcast, owner: owner,
		beatSlot: uint8(rand.N(BeatSlots)),
	}
}

// User is the stream's canonical user id.
func (s *Subscriber) User() string { return s.user }

// Owner is the handler the stream belongs to.
func (s *Subscriber) Owner() *Owner { return s.owner }

// Groups are the groups of the stream's user, sorted; nil when none.
func (s *Subscriber) Groups() []string {
	if g := s.groups.Load(); g != nil {
		return *g
	}
	return nil
}

// SetGroups sets the stream's groups (sorted, without duplicates): where it
// is a member of an index's groups is the caller's to change.
func (s *Subscriber) SetGroups(groups []string) {
	if len(groups) == 0 {
		s.groups.Store(nil)
		return
	}
	s.groups.Store(&groups)
}

// inGroup reports whether the stream's user is in group g.
func (s *Subscriber) inGroup(g string) bool {
	_, found := slices.BinarySearch(s.Groups(), g)
	return found
}

// Broadcast reports whether the stream receives broadcasts.
func (s *Subscriber) Broadcast() bool { return s.broadcast }

// BeatSlot is the tick of its shard's turn at which the heartbeat visits
// the stream, from 0 to BeatSlots-1.
func (s *Subscriber) BeatSlot() int { return int(s.beatSlot) }

// SetWaker sets what runs the stream's writer. It must be called before the
// subscriber is added to an index.
func (s *Subscriber) SetWaker(w Waker) { s.w = w }

// Push queues f. delivered reports that it was queued; overflow that the
// queue was full, in which case the subscriber is now closed (the client
// reconnects) and the caller counts a drop. Both are false when the
// subscriber was already closed.
func (s *Subscriber) Push(f *sse.Frame) (delivered, overflow bool) {
	limit := s.owner.limit.Load()
	s.mu.Lock()
	if s.closed || s.final {
		s.mu.Unlock()
		return false, false
	}
	// One frame is always let through, however large: max_message_size
	// bounds it, and queue_bytes is at least that.
	held := s.queued + s.writing
	if len(s.q) >= limit.Events || (limit.Bytes > 0 && held > 0 && held+f.Len() > limit.Bytes) {
		s.closeLocked()
		s.unlockAndWake()
		return false, true
	}
	s.q = append(s.q, f)
	s.queued += f.Len()
	s.busy = true
	s.unlockAndWake()
	return true, false
}

// Ping queues a heartbeat unless the stream carried a frame since the last
// one or still has frames queued (they will be written soon anyway).
func (s *Subscriber) Ping() {
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
	s.q = append(s.q, sse.Ping)
	s.unlockAndWake()
}

// unlockAndWake unlocks s and, when the writer was parked, wakes it: the
// queue holds something or is closed. The writer runs at most once at a
// time, since only the one who unparks wakes it.
func (s *Subscriber) unlockAndWake() {
	wake := s.parked && s.w != nil
	if wake {
		s.parked = false
	}
	s.mu.Unlock()
	if wake {
		s.w.Wake()
	}
}

// Revoke replaces whatever waits with f, the stream's last frame: the
// writer writes it and ends the stream. It reports false when the stream
// was already ending.
func (s *Subscriber) Revoke(f *sse.Frame) bool {
	s.mu.Lock()
	if s.closed || s.final {
		s.mu.Unlock()
		return false
	}
	clear(s.q)
	s.q = append(s.q[:0], f)
	s.queued = f.Len()
	s.final = true
	s.unlockAndWake()
	return true
}

// Finish ends the stream once what waits is written: nothing more is
// queued, and the writer (woken if it was parked) ends the stream after
// its last write, cleanly. It reports false when the stream was already
// ending.
func (s *Subscriber) Finish() bool {
	s.mu.Lock()
	if s.closed || s.final {
		s.mu.Unlock()
		return false
	}
	s.final = true
	s.unlockAndWake()
	return true
}

// Take is the writer's: the frames written last are done (they stop
// counting against queue_bytes), and the queued ones move into buf (reused
// between calls) and count until the next Take. last reports that they end
// the stream (with nothing queued: the stream ends now, cleanly). open is
// false when the stream must end now (closed). With nothing queued, the
// writer parks: batch is empty, and the next frame queued wakes it again.
func (s *Subscriber) Take(buf []*sse.Frame) (batch []*sse.Frame, last, open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writing = 0
	if s.closed {
		return buf[:0], false, false
	}
	if len(s.q) == 0 {
		if s.final {
			return buf[:0], true, true
		}
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

// Close ends the stream: nothing more is queued, and a parked writer is
// woken to end it.
func (s *Subscriber) Close() {
	s.mu.Lock()
	s.closeLocked()
	s.unlockAndWake()
}

// IsClosed reports whether the stream was closed (by the hub, an overflow,
// its client leaving or its handler ending it).
func (s *Subscriber) IsClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Subscriber) closeLocked() {
	if !s.closed {
		s.closed = true
		s.q, s.queued = nil, 0
	}
}
