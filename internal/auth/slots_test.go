package auth

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// queued returns how many waiters s holds and how many slots are free.
func (s *slots) queued() (waiters, free int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.keys {
		waiters += q.waiters.Len()
	}
	if len(s.keys) != s.turn.Len() {
		panic("a key with waiters is out of turn, or a key without is in")
	}
	return waiters, s.free
}

// TestAuthSlotsFairOrder: slots given back go round-robin over client
// keys, each key's waiters in arrival order, whatever the backlog.
func TestAuthSlotsFairOrder(t *testing.T) {
	s := newSlots(1)
	var order []string
	grant := func(name string) func() { return func() { order = append(order, name) } }
	if w := s.acquire("a", grant("first")); w != nil {
		t.Fatal("a free slot was not granted at once")
	}
	for _, w := range []struct{ key, name string }{
		{"a", "a1"}, {"a", "a2"}, {"a", "a3"}, {"b", "b1"}, {"c", "c1"}, {"a", "a4"}, {"b", "b2"},
	} {
		if s.acquire(w.key, grant(w.name)) == nil {
			t.Fatalf("%s granted while the slot is taken", w.name)
		}
	}
	for range 7 {
		s.release()
	}
	want := []string{"first", "a1", "b1", "c1", "a2", "b2", "a3", "a4"}
	if !slices.Equal(order, want) {
		t.Errorf("granted in order %v, want %v", order, want)
	}
	if n, free := s.queued(); n != 0 || free != 0 {
		t.Errorf("%d waiters, %d free; want 0, 0 (the last grantee holds the slot)", n, free)
	}
	s.release()
	if _, free := s.queued(); free != 1 {
		t.Errorf("%d free after the last release, want 1", free)
	}
}

// TestAuthSlotsCancel: a cancelled waiter is never granted, leaves no trace
// of its key, and a waiter already granted cannot be cancelled.
func TestAuthSlotsCancel(t *testing.T) {
	s := newSlots(1)
	var order []string
	grant := func(name string) func() { return func() { order = append(order, name) } }
	s.acquire("a", grant("first"))
	a1 := s.acquire("a", grant("a1"))
	b1 := s.acquire("b", grant("b1"))
	a2 := s.acquire("a", grant("a2"))
	if !s.cancel(a1) {
		t.Fatal("cancel of a queued waiter reported false")
	}
	if s.cancel(a1) {
		t.Error("second cancel of the same waiter reported true")
	}
	if !s.cancel(b1) {
		t.Fatal("cancel of b1 reported false")
	}
	if n, _ := s.queued(); n != 1 {
		t.Fatalf("%d waiters after two cancels, want 1", n)
	}
	s.release()
	if s.cancel(a2) {
		t.Error("cancel of a granted waiter reported true")
	}
	if !slices.Equal(order, []string{"first", "a2"}) {
		t.Errorf("granted %v, want [first a2]", order)
	}
	s.release()
	if n, free := s.queued(); n != 0 || free != 1 {
		t.Errorf("%d waiters, %d free; want 0, 1", n, free)
	}
	if s.cancel(nil) {
		t.Error("cancel(nil) reported true")
	}
}

// TestAuthSlotsGrantCancelRace runs acquire, cancel and release from many
// goroutines at once (run it under -race): every waiter is either granted
// exactly once or cancelled, never both, no more than n slots are ever
// held, and every slot comes back.
func TestAuthSlotsGrantCancelRace(t *testing.T) {
	const n, workers, rounds = 3, 16, 500
	s := newSlots(n)
	var held, peak, granted, cancelled atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				var once atomic.Int32
				got := make(chan struct{})
				grant := func() {
					if once.Add(1) != 1 {
						t.Error("a waiter was granted twice")
					}
					h := held.Add(1)
					for p := peak.Load(); h > p && !peak.CompareAndSwap(p, h); p = peak.Load() {
					}
					close(got)
				}
				key := string(rune('a' + rng.IntN(4)))
				place := s.acquire(key, grant)
				if rng.IntN(2) == 0 && s.cancel(place) {
					cancelled.Add(1)
					if once.Load() != 0 {
						t.Error("a cancelled waiter was granted")
					}
					continue
				}
				<-got // granted, now or by another worker's release
				granted.Add(1)
				held.Add(-1)
				s.release()
			}
		})
	}
	wg.Wait()
	if granted.Load()+cancelled.Load() != workers*rounds {
		t.Errorf("%d granted + %d cancelled, want %d", granted.Load(), cancelled.Load(), workers*rounds)
	}
	if p := peak.Load(); p > n {
		t.Errorf("%d slots held at once, want at most %d", p, n)
	}
	if waiters, free := s.queued(); waiters != 0 || free != n {
		t.Errorf("%d waiters, %d free at the end; want 0, %d", waiters, free, n)
	}
	t.Logf("%d granted, %d cancelled while queued", granted.Load(), cancelled.Load())
}
