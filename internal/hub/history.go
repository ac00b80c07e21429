package hub

import (
	"slices"
	"sort"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/sse"
	"github.com/caddy-notify/notify/internal/streamid"
)

// userHistory records, for one index, the sequence numbers of the window
// entries that concern each user and of broadcast entries, oldest first.
type userHistory struct {
	byUser    map[string][]uint64
	byGroup   map[string][]uint64
	broadcast []uint64
}

// add records that entry seq concerns users, groups (and everyone, when
// broadcast).
func (h *userHistory) add(w *window, seq uint64, users []string, broadcast bool, groups []string) {
	if h.byUser == nil {
		h.byUser = make(map[string][]uint64)
	}
	for _, u := range users {
		h.byUser[u] = append(dropEvicted(w, h.byUser[u]), seq)
	}
	if len(groups) > 0 && h.byGroup == nil {
		h.byGroup = make(map[string][]uint64)
	}
	for _, g := range groups {
		h.byGroup[g] = append(dropEvicted(w, h.byGroup[g]), seq)
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

// sweep forgets users and groups whose whole history was evicted; run once
// per turn of the ring, it keeps the maps bounded by the users and groups
// in the window.
func (h *userHistory) sweep(w *window) {
	for _, m := range []map[string][]uint64{h.byUser, h.byGroup} {
		for k, seqs := range m {
			if len(seqs) == 0 || seqs[len(seqs)-1] < w.firstSeq {
				delete(m, k)
			}
		}
	}
}

// replay returns the window's frames for a stream of user in groups after
// id, framed for key, in order: entries naming the user, entries to its
// groups, and broadcast entries when the stream takes them, each once.
func (h *userHistory) replay(w *window, key index.Key, user string, groups []string, broadcast bool, after streamid.ID) []*sse.Frame {
	lists := [][]uint64{afterID(w, h.byUser[user], after)}
	if broadcast {
		lists = append(lists, afterID(w, h.broadcast, after))
	}
	for _, g := range groups {
		if seqs := h.byGroup[g]; len(seqs) > 0 {
			lists = append(lists, afterID(w, seqs, after))
		}
	}
	var seqs []uint64
	if len(lists) == 1 {
		seqs = lists[0]
	} else {
		for _, l := range lists {
			seqs = append(seqs, l...)
		}
		slices.Sort(seqs)
		seqs = slices.Compact(seqs)
	}
	out := make([]*sse.Frame, 0, len(seqs))
	for _, seq := range seqs {
		out = append(out, w.at(seq).frameFor(key))
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
