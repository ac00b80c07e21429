package notify

import (
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"sync"
)

// numShards spreads the user index over independently locked shards so that
// streams connecting and disconnecting rarely contend with dispatch.
const numShards = 64

// subscriber is one open stream. It costs a small struct and a one-slot
// channel while idle: events wait in q, a slice that grows only while a
// burst is queued, so no per-stream buffer is reserved up front.
type subscriber struct {
	user      string   // canonical user id
	broadcast bool     // receives messages addressed to "*"
	owner     *Handler // the handler instance whose heartbeat covers it
	limit     int      // queue bound; reaching it closes the stream
	beatSlot  uint8    // which tick of its shard's turn pings it (see Handler.beat)

	mu     sync.Mutex
	q      []*event
	busy   bool          // an event was queued since the last heartbeat
	closed bool          // no more events: the stream must end
	wake   chan struct{} // one slot; signalled when q becomes non-empty, closed with closed
}

func newSubscriber(user string, broadcast bool, owner *Handler, limit int) *subscriber {
	return &subscriber{
		user: user, broadcast: broadcast, owner: owner, limit: limit,
		beatSlot: uint8(rand.N(maxBeatSlots)), wake: make(chan struct{}, 1),
	}
}

// push queues ev. It returns false when the queue is full, in which case the
// subscriber is closed (the client reconnects) and the caller counts a drop.
func (s *subscriber) push(ev *event) (delivered, overflow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, false
	}
	if len(s.q) >= s.limit {
		s.closeLocked()
		return false, true
	}
	s.q = append(s.q, ev)
	s.busy = true
	select {
	case s.wake <- struct{}{}:
	default: // already signalled
	}
	return true, false
}

// ping queues a heartbeat unless the stream carried an event since the last
// one or still has events queued (they will be written soon anyway).
func (s *subscriber) ping() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.q) > 0 {
		return
	}
	if s.busy {
		s.busy = false
		return
	}
	s.q = append(s.q, pingEvent)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take moves the queued events into buf (reused between calls) and returns it.
func (s *subscriber) take(buf []*event) []*event {
	s.mu.Lock()
	buf, s.q = s.q, buf[:0]
	if cap(s.q) > 64 {
		s.q = nil // let a burst's backing array go instead of keeping it per stream
	}
	s.mu.Unlock()
	return buf
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
		s.q = nil
		close(s.wake)
	}
}

// shard is one lock's worth of the user index.
type shard struct {
	mu    sync.Mutex
	users map[string][]*subscriber
	_     [40]byte // keep neighbouring shards' locks off one cache line
}

// index maps user ids to their open streams for one recipient field. Dispatch
// of a message costs one map lookup per recipient plus one push per stream of
// those recipients, whatever the number of other streams.
type index struct {
	field     string // JSON field naming the recipients
	dataField string // stream mode: entry field holding the message
	refs      int    // handler instances using it; guarded by the hub's mu
	seed      maphash.Seed
	shards    [numShards]shard

	// Stream mode: window sequence numbers of the entries for each user,
	// and of broadcast entries, oldest first; guarded by the hub's winMu.
	hist      map[string][]uint64
	histBcast []uint64
}

func newIndex(field string) *index {
	ix := &index{field: field, seed: maphash.MakeSeed()}
	for i := range ix.shards {
		ix.shards[i].users = make(map[string][]*subscriber)
	}
	return ix
}

func (ix *index) shardFor(user string) *shard {
	return &ix.shards[maphash.String(ix.seed, user)%numShards]
}

func (ix *index) add(s *subscriber) {
	sh := ix.shardFor(s.user)
	sh.mu.Lock()
	sh.users[s.user] = append(sh.users[s.user], s)
	sh.mu.Unlock()
}

// remove takes s out of the index; it is safe to call after the hub has
// already removed it.
func (ix *index) remove(s *subscriber) {
	sh := ix.shardFor(s.user)
	sh.mu.Lock()
	sh.removeLocked(s)
	sh.mu.Unlock()
}

func (sh *shard) removeLocked(s *subscriber) {
	subs := sh.users[s.user]
	for i, o := range subs {
		if o == s {
			last := len(subs) - 1
			subs[i] = subs[last]
			subs[last] = nil
			subs = subs[:last]
			break
		}
	}
	if len(subs) == 0 {
		delete(sh.users, s.user)
	} else {
		sh.users[s.user] = subs
	}
}

// deliveryCounts reports what one dispatch did.
type deliveryCounts struct {
	delivered int // events queued to streams
	overflow  int // streams closed because their queue was full
}

// deliver queues ev to every stream of the given users (sorted, without
// duplicates). When broadcast is set, every stream of a handler with
// broadcast enabled receives it too; each stream receives it at most once.
func (ix *index) deliver(users []string, broadcast bool, ev *event) deliveryCounts {
	var c deliveryCounts
	if broadcast {
		for i := range ix.shards {
			sh := &ix.shards[i]
			sh.mu.Lock()
			for user, subs := range sh.users {
				named := slices.Contains(users, user)
				for j := 0; j < len(subs); j++ {
					if s := subs[j]; s.broadcast || named {
						if sh.pushLocked(s, ev, &c) {
							subs = sh.users[user]
							j--
						}
					}
				}
			}
			sh.mu.Unlock()
		}
		return c
	}
	for _, user := range users {
		sh := ix.shardFor(user)
		sh.mu.Lock()
		subs := sh.users[user]
		for j := 0; j < len(subs); j++ {
			if sh.pushLocked(subs[j], ev, &c) {
				subs = sh.users[user]
				j--
			}
		}
		sh.mu.Unlock()
	}
	return c
}

// pushLocked queues ev to s and counts the outcome. It reports whether s was
// removed from the shard (its queue overflowed), so the caller must re-read
// the user's slice and revisit the current position.
func (sh *shard) pushLocked(s *subscriber, ev *event, c *deliveryCounts) (removed bool) {
	ok, overflow := s.push(ev)
	switch {
	case ok:
		c.delivered++
	case overflow:
		c.overflow++
		sh.removeLocked(s)
		return true
	}
	return false
}

// each calls fn for every stream in the index, shard by shard.
func (ix *index) each(fn func(*subscriber)) {
	for i := range ix.shards {
		ix.eachInShard(i, fn)
	}
}

// eachInShard calls fn for every stream in shard i.
func (ix *index) eachInShard(i int, fn func(*subscriber)) {
	sh := &ix.shards[i]
	sh.mu.Lock()
	for _, subs := range sh.users {
		for _, s := range subs {
			fn(s)
		}
	}
	sh.mu.Unlock()
}

// closeAll ends every stream in the index; used when the hub is destroyed.
func (ix *index) closeAll() {
	for i := range ix.shards {
		sh := &ix.shards[i]
		sh.mu.Lock()
		for user, subs := range sh.users {
			for _, s := range subs {
				s.close()
			}
			delete(sh.users, user)
		}
		sh.mu.Unlock()
	}
}

// count returns the number of streams in the index.
func (ix *index) count() int {
	n := 0
	ix.each(func(*subscriber) { n++ })
	return n
}
