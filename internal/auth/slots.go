package auth

import (
	"container/list"
	"sync"
)

// slots hands out a fixed number of slots, one per auth API request in
// flight (auth_concurrency), fairly among clients. While every slot is
// taken, waiters queue per client key (an address, see clientKey), and each
// slot given back goes to the next key in turn, round-robin: a client with
// a thousand checks queued gets one slot per round like a client with one,
// so one address's backlog cannot starve another's.
//
// A waiter costs a small struct and two list elements; it is removed in
// constant time when its client leaves (cancel), so a flood of requests
// that give up at once costs nothing more than their arrival.
type slots struct {
	mu   sync.Mutex
	free int
	keys map[string]*slotKey
	turn list.List // of *slotKey with waiters, the next to be served first
}

// slotKey is the queue of one client key.
type slotKey struct {
	key     string
	waiters list.List     // of *waiter, oldest first
	inTurn  *list.Element // its place in slots.turn
}

// waiter is a place in the queue. Its grant func is called, outside the
// lock, when it is given a slot; from then on its owner must release it.
type waiter struct {
	queue *slotKey
	elem  *list.Element // nil once granted or cancelled
	grant func()
}

func newSlots(n int) *slots {
	return &slots{free: n, keys: make(map[string]*slotKey)}
}

// acquire asks for a slot for client key. When one is free, grant is called
// at once and acquire returns nil; otherwise acquire queues the request and
// returns its place, and grant is called when a slot is given to it, from
// the goroutine that released the slot.
func (s *slots) acquire(key string, grant func()) *waiter {
	s.mu.Lock()
	if s.free > 0 {
		// No one waits while a slot is free: release hands slots to
		// waiters first.
		s.free--
		s.mu.Unlock()
		grant()
		return nil
	}
	q := s.keys[key]
	if q == nil {
		q = &slotKey{key: key}
		q.inTurn = s.turn.PushBack(q)
		s.keys[key] = q
	}
	w := &waiter{queue: q, grant: grant}
	w.elem = q.waiters.PushBack(w)
	s.mu.Unlock()
	return w
}

// cancel takes w out of the queue. It reports false when w was already
// granted a slot (or cancelled): the grant func then owns the slot.
func (s *slots) cancel(w *waiter) bool {
	if w == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.elem == nil {
		return false
	}
	s.remove(w)
	return true
}

// release gives a slot back: to the oldest waiter of the next client key in
// turn, whose grant func is then called, or to the pool.
func (s *slots) release() {
	s.mu.Lock()
	front := s.turn.Front()
	if front == nil {
		s.free++
		s.mu.Unlock()
		return
	}
	q := front.Value.(*slotKey)
	w := q.waiters.Front().Value.(*waiter)
	s.remove(w)
	if q.inTurn != nil {
		// Still waiting: this key's next turn comes after every other
		// key's.
		s.turn.MoveToBack(q.inTurn)
	}
	s.mu.Unlock()
	w.grant()
}

// remove takes w out of its key's queue, and the key out of the turn when
// its queue is empty. s.mu is held.
func (s *slots) remove(w *waiter) {
	q := w.queue
	q.waiters.Remove(w.elem)
	w.elem = nil
	if q.waiters.Len() == 0 {
		s.turn.Remove(q.inTurn)
		q.inTurn = nil
		delete(s.keys, q.key)
	}
}
