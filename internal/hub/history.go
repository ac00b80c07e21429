package hub

import (
	"sort"

	"github.com/caddy-notify/notify/internal/sse"
	"github.com/caddy-notify/notify/internal/streamid"
)

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
func (h *userHistory) replay(w *window, dataField, user string, broadcast bool, after streamid.ID) []*sse.Frame {
	named := afterID(w, h.byUser[user], after)
	var all []uint64
	if broadcast {
		all = afterID(w, h.broadcast, after)
	}
	out := make([]*sse.Frame, 0, len(named)+len(all))
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
		out = append(out, w.at(seq).frameFor(dataField))
	}
	return out
}

// afterID returns the tail of seqs whose entries are in the window and newer
// than id.
func afterID(w *window, seqs []uint64, id streamid.ID) []uint64 {
	start := sort.Search(len(seqs), func(i int) bool {
		return seqs[i] >= w.firstSeq && id.Less(w.at(seqs[i]).id)
	})
	return seqs[start:]
}
