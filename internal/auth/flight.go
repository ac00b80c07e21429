package auth

import (
	"container/list"
	"context"
)

// flight is one auth API check shared by every request with the same
// credentials. Unlike singleflight, it keeps track of its waiters: until its
// request is sent it is abandoned as soon as the last of them leaves, and it
// is sent only if one of them is still there, so a client that opens a
// stream and resets it at once costs the auth API nothing. Once sent, it
// runs to the end, detached from the clients: closing the connection would
// hide the work from us, not from the auth API; new requests with the same
// credentials join it.
type flight struct {
	key   Key
	creds Credentials

	// Guarded by Client.mu.
	waiters list.List // of the waits' contexts: done when the client leaves or gives up
	sent    bool      // the request is out: the flight can no longer be abandoned
	place   *waiter   // its place in the slot queue until send runs

	done chan struct{} // closed when id and err are set
	id   Identity
	err  *Error
}

// join adds a waiter, whose wait ends with ctx, to the flight for key,
// starting one (and queueing it for a slot under client) when there is
// none. It returns the flight and the waiter's place among its waiters.
func (a *Client) join(ctx context.Context, key Key, client string, creds Credentials) (*flight, *list.Element) {
	a.mu.Lock()
	if f := a.flights[key]; f != nil {
		me := f.waiters.PushBack(ctx)
		a.mu.Unlock()
		return f, me
	}
	f := &flight{key: key, creds: creds, done: make(chan struct{})}
	me := f.waiters.PushBack(ctx)
	a.flights[key] = f
	a.mu.Unlock()
	place := a.slots.acquire(client, func() { go a.send(f) })
	if place != nil {
		a.mu.Lock()
		// The caller still waits, so f cannot be abandoned yet; if send
		// has run already, place is stale and cancel will say so.
		if !f.sent {
			f.place = place
		}
		a.mu.Unlock()
	}
	return f, me
}

// leave removes a waiter that gave up. The last one to leave a flight not
// yet sent abandons it: its place in the slot queue is given up at once,
// and the credentials are free for a new flight.
func (a *Client) leave(f *flight, me *list.Element) {
	a.mu.Lock()
	f.waiters.Remove(me)
	if f.waiters.Len() > 0 || f.sent {
		a.mu.Unlock()
		return
	}
	if a.flights[f.key] == f {
		delete(a.flights, f.key)
	}
	place := f.place
	f.place = nil
	a.mu.Unlock()
	if a.slots.cancel(place) {
		a.m.AuthAbandoned.Inc()
	}
	// Otherwise send has the slot, or had it and gave it back.
}

// send makes the flight's call on the slot it was granted. It runs in its
// own goroutine, detached from the clients, and keeps the slot until the
// auth API answers or the timeout passes.
func (a *Client) send(f *flight) {
	a.mu.Lock()
	f.place = nil
	if !f.wanted() {
		// Every waiter has left, or is about to: their clients are gone.
		// They find f out of the map and need nothing more from it.
		if a.flights[f.key] == f {
			delete(a.flights, f.key)
		}
		a.mu.Unlock()
		a.slots.release()
		a.m.AuthAbandoned.Inc()
		return
	}
	f.sent = true
	a.mu.Unlock()

	id, aerr := a.check(context.Background(), f.creds)
	a.slots.release()
	if aerr == nil && a.cache != nil {
		// Before the flight ends, so that the next request finds one or
		// the other.
		a.cache.put(f.key, id)
	}
	a.mu.Lock()
	if a.flights[f.key] == f {
		delete(a.flights, f.key)
	}
	a.mu.Unlock()
	f.id, f.err = id, aerr
	close(f.done)
}

// wanted reports whether a waiter still waits. One whose client has left
// (or whose wait timed out) may not have woken up to leave the flight yet:
// its context says so at once. Client.mu is held.
func (f *flight) wanted() bool {
	for e := f.waiters.Front(); e != nil; e = e.Next() {
		if e.Value.(context.Context).Err() == nil {
			return true
		}
	}
	return false
}
