package main

import (
	"math"
	"time"
)

// streamFigures are a worker's figures per stream: how the server ended
// streams and how they came back (with -reconnect), what each stream lost
// or got twice, and when each one was receiving again. Times are unix ns;
// the histograms are of durations after a time base R (the reload; the
// start of publishing when there is none), in the sparse form of hist.
type streamFigures struct {
	Streams    int    `json:"streams"`
	Ended      uint64 `json:"ended"`        // streams the server ended at least once
	Ends       uint64 `json:"ends"`         // connections it ended, in all
	Down       uint64 `json:"down"`         // ended and not back when the worker reported
	Pending    uint64 `json:"pending"`      // of those, with an attempt under way then (no answer yet)
	Reconnects uint64 `json:"reconnects"`   // connections re-established
	Failures   uint64 `json:"failures"`     // reconnect attempts that failed
	FirstEndNs int64  `json:"first_end_ns"` // the first end; 0: none
	LastEndNs  int64  `json:"last_end_ns"`

	// Up: per ended stream that came back, its last re-establishment − R.
	Up      [][2]uint64 `json:"up,omitempty"`
	MaxUpNs int64       `json:"max_up_ns"`

	Losing      uint64 `json:"losing"` // streams that lost events
	Lost        uint64 `json:"lost"`   // events sent to a stream and not received, all streams
	LostMax     uint64 `json:"lost_max"`
	Duplicating uint64 `json:"duplicating"` // streams that got an event twice
	Dups        uint64 `json:"dups"`
	DupMax      uint64 `json:"dup_max"`

	// Back: per affected stream (ended, or losing events), when it was
	// receiving again − R: when it was re-established, unless it lost an
	// event due after that (or was never ended and lost one): then when
	// the first event it received after its last loss was due (the
	// publisher's schedule, which is never early; the resolution is the
	// time between two events of its user). Late: the streams of the
	// second kind.
	Back      [][2]uint64 `json:"back,omitempty"`
	MaxBackNs int64       `json:"max_back_ns"`
	Late      uint64      `json:"late"`
	NotBack   uint64      `json:"not_back"` // late streams that received nothing after their last loss

	// Event ids (counters.idRegress, resumeGaps, resumeGapEvents).
	IDRegress       uint64 `json:"id_regress"`
	ResumeGaps      uint64 `json:"resume_gaps"`
	ResumeGapEvents uint64 `json:"resume_gap_events"`
}

// perStream computes the figures of the worker's streams once k events
// were published; reloadNs is the time base (0: the start of publishing).
func (w *worker) perStream(k int, reloadNs int64) streamFigures {
	w.mu.Lock()
	states := append([]*streamState(nil), w.states...)
	w.mu.Unlock()
	pubStart := w.pubStart.Load()
	if reloadNs == 0 {
		reloadNs = pubStart
	}
	f := streamFigures{Streams: len(states), Pending: uint64(max(w.attempting.Load(), 0)), IDRegress: w.c.idRegress.Load(),
		ResumeGaps: w.c.resumeGaps.Load(), ResumeGapEvents: w.c.resumeGapEvents.Load()}
	var up, back hist
	for _, st := range states {
		sent := w.sent(st.userN, k)
		uniq, dups, rec := st.stats()
		if rec.ends > 0 {
			f.Ended++
			f.Ends += uint64(rec.ends)
			if f.FirstEndNs == 0 || rec.firstEnd < f.FirstEndNs {
				f.FirstEndNs = rec.firstEnd
			}
			f.LastEndNs = max(f.LastEndNs, rec.lastEnd)
			if rec.down {
				f.Down++
			} else {
				up.record(time.Duration(rec.upNs - reloadNs))
			}
		}
		f.Reconnects += uint64(rec.reconnects)
		f.Failures += uint64(rec.failures)
		if dups > 0 {
			f.Duplicating++
			f.Dups += dups
			f.DupMax = max(f.DupMax, dups)
		}
		var lostLast, after uint64
		if uniq < sent {
			lost := sent - uniq
			f.Losing++
			f.Lost += lost
			f.LostMax = max(f.LostMax, lost)
			lostLast, after = st.lastLoss(sent)
		}
		switch {
		case rec.down: // not back: counted in Down
		case lostLast > 0 && (rec.ends == 0 || w.dueNs(st.userN, lostLast, pubStart) > rec.upNs+lateSlack):
			f.Late++
			if after == 0 {
				f.NotBack++
			} else {
				back.record(time.Duration(w.dueNs(st.userN, after, pubStart) - reloadNs))
			}
		case rec.ends > 0:
			back.record(time.Duration(rec.upNs - reloadNs))
		}
	}
	f.Up, f.MaxUpNs = up.sparse(), up.max.Load()
	f.Back, f.MaxBackNs = back.sparse(), back.max.Load()
	return f
}

// lateSlack: a loss due this long after a stream was re-established is
// not explained by its reconnect (the server subscribes it before its 200).
const lateSlack = int64(time.Second)

// dueNs is when the publisher was due to send event seq of user's stream:
// event m goes out at pubStart + m/rate.
func (w *worker) dueNs(user int, seq uint64, pubStart int64) int64 {
	if w.cfg.rate <= 0 { // nothing was published: nothing was lost
		return pubStart
	}
	m := (seq-1)*uint64(w.cfg.users) + uint64(user)
	if w.cfg.fan > 0 {
		m = (seq-1)*uint64(w.cfg.fan) + uint64(user%w.cfg.fan)
	}
	return pubStart + int64(math.Round(float64(m)/w.cfg.rate*1e9))
}
