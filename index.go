package notify

import (
	"hash/maphash"
	"slices"
	"sync"
)

// numShards spreads the user index over independently locked shards so that
// streams connecting and disconnecting rarely contend with dispatch.
const numShards = 64

// indexKey names an index: streams that read messages from the same entry
// field (stream mode) and recipients from the same JSON field share one.
type indexKey struct {
	dataField      string
	recipientField string
}

// index maps user ids to their open streams for one recipient field. Dispatch
// of a message costs one map lookup per recipient plus one push per stream of
// those recipients, whatever the number of other streams.
type index struct {
	key    indexKey
	refs   int // handler instances using it; guarded by the hub's mu
	seed   maphash.Seed
	shards [numShards]shard

	// Stream mode: which window entries concern which user; guarded by
	// the stream reader's mutex.
	hist userHistory
}

// shard is one lock's worth of the user index.
type shard struct {
	mu    sync.Mutex
	users map[string][]*subscriber
}

func newIndex(key indexKey) *index {
	ix := &index{key: key, seed: maphash.MakeSeed()}
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

// remove takes s out of the index; it is safe to call after the index has
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

// eachInShard calls fn for every stream in shard i, with the shard locked.
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

// closeAll ends every stream in the index; used when its last handler
// detaches or the hub is destroyed.
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

// eachOfUser calls fn for every stream of user, with its shard locked.
func (ix *index) eachOfUser(user string, fn func(*subscriber)) {
	sh := ix.shardFor(user)
	sh.mu.Lock()
	for _, s := range sh.users[user] {
		fn(s)
	}
	sh.mu.Unlock()
}
