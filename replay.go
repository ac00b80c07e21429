package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Resuming a stream-mode stream after the client's Last-Event-ID: what the
// window holds is replayed from memory, older entries are read from Redis in
// pages, and the subscriber is registered under the reader's mutex so that
// the first live event it gets is the one after the last one replayed.

const (
	// rangePage is the XRANGE page size of a replay from Redis.
	rangePage = 1000
	// maxResumeRounds bounds how often a replay from Redis chases a window
	// that moves faster than the pages can be read.
	maxResumeRounds = 8
	// lagWait is how long a resume from an ID this instance has not read
	// yet (another instance delivered it) waits for the reader.
	lagWait = time.Second
)

// replay is the state of one resume.
type replay struct {
	ix    *index
	sub   *subscriber
	after entryID // the client's last event ID
	limit int     // replay_limit

	fetched   []*event // matches read from Redis, oldest first
	overLimit bool     // older matches were dropped from fetched
	cursor    entryID  // Redis has been read up to here
	truncated bool     // entries after `after` were removed from Redis
	infoRead  bool
}

// resume registers sub so that it receives every event after `after`
// exactly once, and returns the events to replay first.
func (r *streamReader) resume(ctx context.Context, ix *index, sub *subscriber, after entryID, limit int) (preamble, error) {
	rp := &replay{ix: ix, sub: sub, after: after, limit: limit, cursor: after}
	for range maxResumeRounds {
		p, joined, last, coverAfter := r.tryJoin(rp)
		if joined {
			return p, nil
		}
		if last.less(after) {
			p, done, err := r.resumeAhead(ctx, rp, last)
			if err != nil || done {
				return p, err
			}
			continue
		}
		if err := r.fetch(ctx, rp, coverAfter); err != nil {
			return preamble{}, err
		}
	}
	return preamble{}, errors.New("stream history moves faster than it can be replayed")
}

// tryJoin registers rp's subscriber when everything it missed is in the
// window or already fetched, and returns its preamble. Otherwise it returns
// the window's bounds: its newest entry, and the ID after which it holds
// everything.
func (r *streamReader) tryJoin(rp *replay) (p preamble, joined bool, last, coverAfter entryID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.win
	if w.last.less(rp.after) || (rp.after.less(w.coverAfter) && rp.cursor.less(w.coverAfter)) {
		return preamble{}, false, w.last, w.coverAfter
	}
	var events []*event
	for _, ev := range rp.fetched {
		if !w.coverAfter.less(ev.id) { // newer ones are in the window
			events = append(events, ev)
		}
	}
	fromRedis := len(events)
	from := rp.after
	if from.less(w.coverAfter) {
		from = w.coverAfter
	}
	events = append(events, rp.ix.hist.replay(w, rp.ix.key.dataField, rp.sub.user, rp.sub.broadcast, from)...)
	rp.ix.add(rp.sub)
	return rp.finish(events, fromRedis, w.last), true, w.last, w.coverAfter
}

// finish applies replay_limit and the reset rules to the events to replay;
// end is where the stream continues.
func (rp *replay) finish(events []*event, fromRedis int, end entryID) preamble {
	p := preamble{replay: events, fromRedis: fromRedis}
	switch {
	case rp.overLimit || len(events) > rp.limit:
		drop := max(0, len(events)-rp.limit)
		p.replay, p.fromRedis = events[drop:], max(0, fromRedis-drop)
		p.reset, p.reason = resetEvent(resetReplayOver, nil), resetReplayOver
	case rp.truncated:
		p.reason = resetTruncated
		if len(events) == 0 {
			p.reset = resetEvent(resetTruncated, &end)
		} else {
			p.reset = resetEvent(resetTruncated, nil)
		}
	}
	return p
}

// resumeAhead handles an ID newer than the last entry read. When Redis
// never generated it, the stream was deleted or recreated: the subscriber
// is registered with an unknown_last_event_id reset carrying the current
// end. Otherwise the reader lags behind the instance that sent the ID, and
// resumeAhead waits for it to move (done is false: try again).
func (r *streamReader) resumeAhead(ctx context.Context, rp *replay, last entryID) (p preamble, done bool, _ error) {
	info, err := r.info(ctx)
	if err != nil {
		return preamble{}, true, err
	}
	if info.lastGenerated.less(rp.after) {
		r.mu.Lock()
		end := r.win.last
		rp.ix.add(rp.sub)
		r.mu.Unlock()
		return preamble{reset: resetEvent(resetUnknownID, &end), reason: resetUnknownID}, true, nil
	}
	if !r.waitMoved(ctx, last) {
		return preamble{}, true, errors.New("stream reader is behind")
	}
	return preamble{}, false, nil
}

// waitMoved waits up to lagWait for the reader to read past last.
func (r *streamReader) waitMoved(ctx context.Context, last entryID) bool {
	t := time.NewTimer(lagWait)
	defer t.Stop()
	for {
		r.mu.Lock()
		if last.less(r.win.last) {
			r.mu.Unlock()
			return true
		}
		if r.moved == nil {
			r.moved = make(chan struct{})
		}
		moved := r.moved
		r.mu.Unlock()
		select {
		case <-moved:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// fetch reads from Redis the entries after rp.cursor up to until, the ID
// after which the window holds everything.
func (r *streamReader) fetch(ctx context.Context, rp *replay, until entryID) error {
	if !rp.infoRead {
		info, err := r.info(ctx)
		if err != nil {
			return err
		}
		rp.truncated = info.trimmedAfter(rp.after)
		rp.infoRead = true
	}
	next, err := r.fetchRange(ctx, rp, until)
	if err != nil {
		return err
	}
	if next == rp.cursor {
		// Redis holds nothing after the cursor, yet the window has moved
		// past it: those entries were trimmed and evicted.
		rp.truncated = true
		next = until
	}
	rp.cursor = next
	return nil
}

// fetchRange reads entries after rp.cursor from Redis in pages until it
// reaches until or the end of the stream, and keeps the subscriber's
// matches, at most about 2×(limit+1) of them. It returns the newest ID read,
// or rp.cursor when there was none.
func (r *streamReader) fetchRange(ctx context.Context, rp *replay, until entryID) (next entryID, _ error) {
	next = rp.cursor
	keep := rp.limit + 1
	for {
		msgs, err := r.hub.client.XRangeN(ctx, r.key, "("+next.String(), "+", rangePage).Result()
		metrics.replayRedisCommands.Inc()
		if err != nil {
			return rp.cursor, fmt.Errorf("reading stream history: %w", err)
		}
		for _, m := range msgs {
			id, ok := parseEntryID(m.ID)
			if !ok {
				continue
			}
			next = id
			payload, ok := entryPayload(m.Values, rp.ix.key.dataField)
			if !ok {
				continue
			}
			users, broadcast, reason := route(payload, rp.ix.key.recipientField)
			if reason != "" {
				continue
			}
			if slices.Contains(users, rp.sub.user) || (rp.sub.broadcast && broadcast) {
				rp.fetched = append(rp.fetched, entryEvent(id, payload))
			}
		}
		if len(rp.fetched) > 2*keep {
			// Bound the memory one far-behind client can take.
			rp.fetched = append(rp.fetched[:0], rp.fetched[len(rp.fetched)-keep:]...)
			rp.overLimit = true
		}
		if len(msgs) < rangePage || !next.less(until) {
			return next, nil
		}
	}
}

// xinfo is what XINFO STREAM says about the stream.
type xinfo struct {
	exists        bool
	first         entryID // oldest retained entry
	lastGenerated entryID // newest ID ever added
	maxDeleted    entryID // newest ID removed by XDEL (XTRIM does not set it)
	removed       int64   // entries added minus entries retained
}

// trimmedAfter reports whether entries after id may have been removed.
// Redis keeps no record of what XTRIM removed, only the oldest retained
// entry, so this is a false alarm when the client's next entry is exactly
// that one. A stream from which nothing was ever removed is never trimmed.
func (st xinfo) trimmedAfter(id entryID) bool {
	if !st.exists {
		return true
	}
	if st.removed <= 0 {
		return false
	}
	return id.less(st.first) || id.less(st.maxDeleted)
}

// info reads XINFO STREAM.
func (r *streamReader) info(ctx context.Context) (xinfo, error) {
	info, err := r.hub.client.XInfoStream(ctx, r.key).Result()
	metrics.replayRedisCommands.Inc()
	if err != nil {
		if isNoSuchKey(err) {
			return xinfo{}, nil
		}
		return xinfo{}, fmt.Errorf("reading stream info: %w", err)
	}
	st := xinfo{exists: true}
	st.first, _ = parseEntryID(info.FirstEntry.ID)
	st.lastGenerated, _ = parseEntryID(info.LastGeneratedID)
	st.maxDeleted, _ = parseEntryID(info.MaxDeletedEntryID)
	if info.EntriesAdded > 0 { // Redis 7+; older servers do not say
		st.removed = info.EntriesAdded - info.Length
	} else {
		st.removed = 1
	}
	return st, nil
}

func isNoSuchKey(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(re.Error(), "no such key")
}
