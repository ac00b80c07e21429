package notify

import "sort"

// historyConfig bounds the in-process window of recent stream entries.
type historyConfig struct {
	entries int
	bytes   int
}

// winEntry is one Redis Stream entry kept in the window.
type winEntry struct {
	id      entryID
	fields  map[string]any // the entry as read, for indexes attached later
	ev      *event         // its SSE frame for the data field evField; nil when malformed
	evField string
	size    int
}

// window holds the newest stream entries, oldest first, in a ring; each
// entry has a sequence number that grows by one per entry. It is guarded by
// the stream reader's mutex.
type window struct {
	ring     []winEntry
	maxBytes int
	head     int    // ring position of the oldest entry
	n        int    // entries held
	firstSeq uint64 // sequence number of the oldest entry
	bytes    int
	// coverAfter: every entry with an ID above it, up to last, is in the
	// window. Entries at or below it must be read from Redis.
	coverAfter entryID
	last       entryID // newest entry read from Redis
	sweepAt    uint64  // firstSeq at which the user histories are next pruned
}

func newWindow(cfg historyConfig) *window {
	return &window{ring: make([]winEntry, cfg.entries), maxBytes: cfg.bytes}
}

func (w *window) at(seq uint64) *winEntry {
	return &w.ring[(w.head+int(seq-w.firstSeq))%len(w.ring)]
}

func (w *window) nextSeq() uint64 { return w.firstSeq + uint64(w.n) }

// push appends an entry, evicting the oldest ones past the bounds, and
// returns its sequence number.
func (w *window) push(e winEntry) uint64 {
	for w.n > 0 && (w.n == len(w.ring) || w.bytes+e.size > w.maxBytes) {
		w.evict()
	}
	seq := w.nextSeq()
	w.ring[(w.head+w.n)%len(w.ring)] = e
	w.n++
	w.bytes += e.size
	w.last = e.id
	return seq
}

func (w *window) evict() {
	old := &w.ring[w.head]
	w.coverAfter = laterID(w.coverAfter, old.id)
	w.bytes -= old.size
	*old = winEntry{}
	w.head = (w.head + 1) % len(w.ring)
	w.n--
	w.firstSeq++
}

// sweepDue reports whether the ring turned once since the last sweep of the
// user histories, and schedules the next one.
func (w *window) sweepDue() bool {
	if w.firstSeq < w.sweepAt {
		return false
	}
	w.sweepAt = w.firstSeq + uint64(len(w.ring))
	return true
}

// userHistory records, for one index, the sequence numbers of the window
// entries that concern each user and of broadcast entries, oldest first.
type userHistory struct {
	byUser    map[string][]uint64
	broadcast []uint64
}

// add records that entry seq concerns users (and everyone, when broadcast).
func (h *userHistory) add(w *window, seq uint64, users []string, broadcast bool) {
	if h.byUser == nil {
		h.byUser = make(map[string][]uint64)
	}
	for _, u := range users {
		h.byUser[u] = append(dropEvicted(w, h.byUser[u]), seq)
	}
	if broadcast {
		h.broadcast = append(dropEvicted(w, h.broadcast), seq)
	}
}

// dropEvicted drops what the window already evicted, so a user's slice
// stays short.
func dropEvicted(w *window, seqs []uint64) []uint64 {
	i := 0
	for i < len(seqs) && seqs[i] < w.firstSeq {
		i++
	}
	return seqs[i:]
}

// sweep forgets users whose whole history was evicted; run once per turn
// of the ring, it keeps the map bounded by the users in the window.
func (h *userHistory) sweep(w *window) {
	for u, seqs := range h.byUser {
		if len(seqs) == 0 || seqs[len(seqs)-1] < w.firstSeq {
			delete(h.byUser, u)
		}
	}
}

// replay returns the window's events for user after id, framed from
// dataField, in order: entries naming the user, and broadcast entries when
// the stream takes them.
func (h *userHistory) replay(w *window, dataField, user string, broadcast bool, after entryID) []*event {
	named := afterID(w, h.byUser[user], after)
	var all []uint64
	if broadcast {
		all = afterID(w, h.broadcast, after)
	}
	out := make([]*event, 0, len(named)+len(all))
	i, j := 0, 0
	for i < len(named) || j < len(all) {
		var seq uint64
		switch {
		case j == len(all) || (i < len(named) && named[i] < all[j]):
			seq = named[i]
			i++
		case i == len(named) || all[j] < named[i]:
			seq = all[j]
			j++
		default: // in both lists: named and broadcast
			seq = named[i]
			i++
			j++
		}
		out = append(out, w.at(seq).eventFor(dataField))
	}
	return out
}

// afterID returns the tail of seqs whose entries are in the window and newer
// than id.
func afterID(w *window, seqs []uint64, id entryID) []uint64 {
	start := sort.Search(len(seqs), func(i int) bool {
		return seqs[i] >= w.firstSeq && id.less(w.at(seqs[i]).id)
	})
	return seqs[start:]
}
