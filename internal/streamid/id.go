// Package streamid is the Redis Stream entry ID: <ms>-<seq>, ordered, and
// the SSE id of every event in stream mode.
package streamid

import (
	"math"
	"strconv"
	"strings"
)

// ID is a Redis Stream entry ID, <ms>-<seq>. The zero value is 0-0, which
// precedes every entry.
type ID struct {
	Ms, Seq uint64
}

// Parse accepts exactly "<ms>-<seq>" with two decimal parts, the form Redis
// gives entries and the handler sends as SSE ids.
func Parse(s string) (ID, bool) {
	msPart, seqPart, ok := strings.Cut(s, "-")
	if !ok || !isDecimal(msPart) || !isDecimal(seqPart) {
		return ID{}, false
	}
	ms, err1 := strconv.ParseUint(msPart, 10, 64)
	seq, err2 := strconv.ParseUint(seqPart, 10, 64)
	if err1 != nil || err2 != nil {
		return ID{}, false
	}
	return ID{ms, seq}, true
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

// Less reports whether a precedes b.
func (a ID) Less(b ID) bool {
	return a.Ms < b.Ms || (a.Ms == b.Ms && a.Seq < b.Seq)
}

func (a ID) String() string {
	return strconv.FormatUint(a.Ms, 10) + "-" + strconv.FormatUint(a.Seq, 10)
}

// AppendTo appends the ID's text to dst without allocating.
func (a ID) AppendTo(dst []byte) []byte {
	dst = strconv.AppendUint(dst, a.Ms, 10)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, a.Seq, 10)
}

// Prev returns the greatest ID below a, or 0-0 for 0-0: "after a.Prev()"
// includes a itself.
func (a ID) Prev() ID {
	switch {
	case a.Seq > 0:
		return ID{a.Ms, a.Seq - 1}
	case a.Ms > 0:
		return ID{a.Ms - 1, math.MaxUint64}
	default:
		return a
	}
}

// Later returns the later of a and b.
func Later(a, b ID) ID {
	if a.Less(b) {
		return b
	}
	return a
}
