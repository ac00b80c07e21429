// Package index routes messages to open streams: an Index maps user ids to
// the Subscribers (the queues) of their streams, so that delivering a
// message costs one lookup per recipient and one push per stream of those
// recipients, whatever the number of other streams.
package index

import (
	"hash/maphash"
	"slices"
	"sync"

	"github.com/caddy-notify/notify/internal/sse"
)

// NumShards spreads an index over independently locked shards so that
// streams connecting and disconnecting rarely contend with dispatch.
const NumShards = 64

// Key names an index: streams that read messages from the same entry field
// (stream mode) and recipients from the same JSON field share one.
type Key struct {
	DataField      string // stream mode: the entry field holding the message
	RecipientField string
}

// Index maps user ids to their open streams, for one Key.
type Index struct {
	key    Key
	seed   maphash.Seed
	shards [NumShards]shard
}

// shard is one lock's worth of the user index.
type shard struct {
	mu    sync.Mutex
	users map[string][]*Subscriber
}

// New returns an empty index.
func New(key Key) *Index {
	ix := &Index{key: key, seed: maphash.MakeSeed()}
	for i := range ix.shards {
		ix.shards[i].users = make(map[string][]*Subscriber)
	}
	return ix
}

// Key is what the index routes by.
func (ix *Index) Key() Key { return ix.key }

func (ix *Index) shardFor(user string) *shard {
	return &ix.shards[maphash.String(ix.seed, user)%NumShards]
}

// Add makes s receive its user's messages.
func (ix *Index) Add(s *Subscriber) {
	sh := ix.shardFor(s.user)
	sh.mu.Lock()
	sh.users[s.user] = append(sh.users[s.user], s)
	sh.mu.Unlock()
}

// Remove takes s out of the index; it is safe to call after the index has
// already removed it.
func (ix *Index) Remove(s *Subscriber) {
	sh := ix.shardFor(s.user)
	sh.mu.Lock()
	sh.removeLocked(s)
	sh.mu.Unlock()
}

func (sh *shard) removeLocked(s *Subscriber) {
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

// Counts reports what one delivery did.
type Counts struct {
	Delivered int // frames queued to streams
	Overflow  int // streams closed because their queue was full
}

// Deliver queues f to every stream of the given users (sorted, without
// duplicates). When broadcast is set, every stream of a handler with
// broadcast enabled receives it too; each stream receives it at most once.
func (ix *Index) Deliver(users []string, broadcast bool, f *sse.Frame) Counts {
	var c Counts
	if broadcast {
		for i := range ix.shards {
			sh := &ix.shards[i]
			sh.mu.Lock()
			for user, subs := range sh.users {
				named := slices.Contains(users, user)
				for j := 0; j < len(subs); j++ {
					if s := subs[j]; s.broadcast || named {
						if sh.pushLocked(s, f, &c) {
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
			if sh.pushLocked(subs[j], f, &c) {
				subs = sh.users[user]
				j--
			}
		}
		sh.mu.Unlock()
	}
	return c
}

// pushLocked queues f to s and counts the outcome. It reports whether s was
// removed from the shard (its queue overflowed), so the caller must re-read
// the user's slice and revisit the current position.
func (sh *shard) pushLocked(s *Subscriber, f *sse.Frame, c *Counts) (removed bool) {
	ok, overflow := s.Push(f)
	switch {
	case ok:
		c.Delivered++
	case overflow:
		c.Overflow++
		sh.removeLocked(s)
		return true
	}
	return false
}

// EachInShard calls fn for every stream in shard i, with the shard locked.
func (ix *Index) EachInShard(i int, fn func(*Subscriber)) {
	sh := &ix.shards[i]
	sh.mu.Lock()
	for _, subs := range sh.users {
		for _, s := range subs {
			fn(s)
		}
	}
	sh.mu.Unlock()
}

// EachOfUser calls fn for every stream of user, with its shard locked.
func (ix *Index) EachOfUser(user string, fn func(*Subscriber)) {
	sh := ix.shardFor(user)
	sh.mu.Lock()
	for _, s := range sh.users[user] {
		fn(s)
	}
	sh.mu.Unlock()
}

// CloseAll ends every stream in the index; used when its last handler
// detaches or its hub is destroyed.
func (ix *Index) CloseAll() {
	for i := range ix.shards {
		sh := &ix.shards[i]
		sh.mu.Lock()
		for user, subs := range sh.users {
			for _, s := range subs {
				s.Close()
			}
			delete(sh.users, user)
		}
		sh.mu.Unlock()
	}
}
