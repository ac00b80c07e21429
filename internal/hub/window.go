package hub

import (
	"github.com/caddy-notify/notify/internal/sse"
	"github.com/caddy-notify/notify/internal/streamid"
)

// winEntry is one Redis Stream entry kept in the window.
type winEntry struct {
	id     streamid.ID
	fields map[string]any // the entry as read, for indexes attached later
	ev     *sse.Frame     // its SSE frame for the fields evKey; nil when malformed
	evKey  frameKey
	size   int
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
	coverAfter streamid.ID
	last       streamid.ID // newest entry read from Redis
	sweepAt    uint64      // firstSeq at which the user histories are next pruned
}

func newWindow(cfg History) *window {
	return &window{ring: make([]winEntry, cfg.Entries), maxBytes: cfg.Bytes}
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
	w.coverAfter = streamid.Later(w.coverAfter, old.id)
	w.bytes -= old.size
	*old = winEntry{}
	w.head = (w.head + 1) % len(w.ring)
	w.n--
	w.firstSeq++
}

// retract evicts the entries that Redis may no longer hold, by info, read
// after they were: those older than the stream's first entry (trimmed),
// those at or below its newest deleted ID (Redis says which ID an XDEL
// removed last, not which before it: every entry up to it goes), or all of
// them when the stream is empty or gone (DEL). Resumes from before them
// then read Redis, which knows what is left.
func (w *window) retract(info xinfo) {
	for w.n > 0 {
		id := w.ring[w.head].id
		kept := info.exists && info.first != (streamid.ID{}) && !id.Less(info.first) && info.maxDeleted.Less(id)
		if kept {
			return
		}
		w.evict()
	}
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

// frameKey is what an entry's frame depends on besides the entry: the
// field its message is in and the field naming its event.
type frameKey struct {
	data, event string
}
