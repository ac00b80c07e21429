// Package index routes messages to open streams: an Index maps user ids,
// and group names, to the Subscribers (the queues) of their streams, so
// that delivering a message costs one lookup per recipient or group and one
// push per stream that receives it, whatever the number of other streams.
package index

import (
	"hash/maphash"
	"slices"
	"sync"

	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/sse"
)

// NumShards spreads an index over independently locked shards so that
// streams connecting and disconnecting rarely contend with dispatch.
const NumShards = 64

// Key names an index: streams that read messages from the same entry field
// (stream mode) and read them by the same fields share one.
type Key struct {
	DataField string // stream mode: the entry field holding the message
	message.Fields
}

// Index maps user ids and group names to their open streams, for one Key.
type Index struct {
	key    Key
	seed   maphash.Seed
	shards [NumShards]shard
	groups [NumShards]groupShard
}

// shard is one lock's worth of the user index.
type shard struct {
	mu    sync.Mutex
	users map[string][]*Subscriber
}

// groupShard is one lock's worth of the group index: the members of a
// group are a set, so that a stream leaves a large group in constant time.
type groupShard struct {
	mu      sync.Mutex
	members map[string]map[*Subscriber]struct{}
}

// New returns an empty index.
func New(key Key) *Index {
	ix := &Index{key: key, seed: maphash.MakeSeed()}
	for i := range ix.shards {
		ix.shards[i].users = make(map[string][]*Subscriber)
		ix.groups[i].members = make(map[string]map[*Subscriber]struct{})
	}
	return ix
}

// Key is what the index routes by.
func (ix *Index) Key() Key { return ix.key }

func (ix *Index) shardFor(user string) *shard {
	return &ix.shards[maphash.String(ix.seed, user)%NumShards]
}

func (ix *Index) groupShardFor(group string) *groupShard {
	return &ix.groups[maphash.String(ix.seed, group)%NumShards]
}

// Add makes s receive its user's messages.
func (ix *Index) Add(s *Subscriber) {
	sh := ix.shardFor(s.user)
	sh.mu.Lock()
	sh.users[s.user] = append(sh.users[s.user], s)
	sh.mu.Unlock()
}

// Remove takes s out of the user index; it is safe to call after the index
// has already removed it.
func (ix *Index) Remove(s *Subscriber) {
	sh := ix.shardFor(s.user)
	sh.mu.Lock()
	sh.removeLocked(s)
	sh.mu.Unlock()
}

// AddGroups makes s receive the messages addressed to groups, which this
// index delivers.
func (ix *Index) AddGroups(s *Subscriber, groups []string) {
	for _, g := range groups {
		gs := ix.groupShardFor(g)
		gs.mu.Lock()
		m := gs.members[g]
		if m == nil {
			m = make(map[*Subscriber]struct{})
			gs.members[g] = m
		}
		m[s] = struct{}{}
		gs.mu.Unlock()
	}
}

// RemoveGroups takes s out of groups; a group it is not in is left alone.
func (ix *Index) RemoveGroups(s *Subscriber, groups []string) {
	for _, g := range groups {
		gs := ix.groupShardFor(g)
		gs.mu.Lock()
		gs.removeLocked(g, s)
		gs.mu.Unlock()
	}
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

func (gs *groupShard) removeLocked(g string, s *Subscriber) {
	if m := gs.members[g]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(gs.members, g)
		}
	}
}

// Counts reports what one delivery did.
type Counts struct {
	Delivered int // frames queued to streams
	Overflow  int // streams closed because their queue was full
}

// Deliver queues f to every stream of users and of groups: the users and
// groups of r that this index delivers (those of its partition; all of
// them without partitions), sorted. When r is a broadcast, every stream of
// a handler with broadcast enabled receives it too. Each stream receives
// it at most once, wherever it is indexed: it receives it the first way it
// matches, in this order: as a named user, as a broadcast, as a member of
// r's first group it is in; a stream whose first way is elsewhere (another
// partition's index) is skipped here.
func (ix *Index) Deliver(r *message.Route, users, groups []string, f *sse.Frame) Counts {
	var c Counts
	if r.Broadcast {
		for i := range ix.shards {
			sh := &ix.shards[i]
			sh.mu.Lock()
			for user, subs := range sh.users {
				_, named := slices.BinarySearch(users, user)
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
	} else {
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
	}
	for _, g := range groups {
		gs := ix.groupShardFor(g)
		gs.mu.Lock()
		for s := range gs.members[g] {
			if firstMatchElsewhere(r, s, g) {
				continue
			}
			switch ok, overflow := s.Push(f); {
			case ok:
				c.Delivered++
			case overflow:
				c.Overflow++
				gs.removeLocked(g, s)
			}
		}
		gs.mu.Unlock()
	}
	return c
}

// firstMatchElsewhere reports whether s, a member of group g, receives r
// another way first: as a named user, as a broadcast, or through one of r's
// groups before g.
func firstMatchElsewhere(r *message.Route, s *Subscriber, g string) bool {
	if _, named := slices.BinarySearch(r.Users, s.user); named {
		return true
	}
	if r.Broadcast && s.broadcast {
		return true
	}
	for _, earlier := range r.Groups {
		if earlier >= g {
			return false
		}
		if s.inGroup(earlier) {
			return true
		}
	}
	return false
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

// EachInShard calls fn for every stream in shard i of the user index, with
// the shard locked.
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

// EachOfGroup calls fn for every member of group in this index, with its
// shard locked.
func (ix *Index) EachOfGroup(group string, fn func(*Subscriber)) {
	gs := ix.groupShardFor(group)
	gs.mu.Lock()
	for s := range gs.members[group] {
		fn(s)
	}
	gs.mu.Unlock()
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
		gs := &ix.groups[i]
		gs.mu.Lock()
		for g, m := range gs.members {
			for s := range m {
				s.Close()
			}
			delete(gs.members, g)
		}
		gs.mu.Unlock()
	}
}
