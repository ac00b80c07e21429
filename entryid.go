package notify

import (
	"math"
	"strconv"
	"strings"
)

// entryID is a Redis Stream entry ID, <ms>-<seq>. The zero value is 0-0,
// which precedes every entry.
type entryID struct {
	ms, seq uint64
}

// parseEntryID accepts exactly "<ms>-<seq>" with two decimal parts, the
// form Redis gives entries and the handler sends as SSE ids.
func parseEntryID(s string) (entryID, bool) {
	msPart, seqPart, ok := strings.Cut(s, "-")
	if !ok || !isDecimal(msPart) || !isDecimal(seqPart) {
		return entryID{}, false
	}
	ms, err1 := strconv.ParseUint(msPart, 10, 64)
	seq, err2 := strconv.ParseUint(seqPart, 10, 64)
	if err1 != nil || err2 != nil {
		return entryID{}, false
	}
	return entryID{ms, seq}, true
}

func isDecimal(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (a entryID) less(b entryID) bool {
	return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq)
}

func (a entryID) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}

// appendTo appends the ID's text to dst without allocating.
func (a entryID) appendTo(dst []byte) []byte {
	dst = strconv.AppendUint(dst, a.ms, 10)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, a.seq, 10)
}

// prev returns the greatest ID below a, or 0-0 for 0-0: "after a.prev()"
// includes a itself.
func (a entryID) prev() entryID {
	switch {
	case a.seq > 0:
		return entryID{a.ms, a.seq - 1}
	case a.ms > 0:
		return entryID{a.ms - 1, math.MaxUint64}
	default:
		return a
	}
}

// laterID returns the later of a and b.
func laterID(a, b entryID) entryID {
	if a.less(b) {
		return b
	}
	return a
}
