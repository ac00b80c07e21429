package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/sse"
	"github.com/caddy-notify/notify/internal/streamid"
)

// Resuming a stream-mode stream after the client's Last-Event-ID. The
// subscriber is registered first, under the reader's mutex, at the newest
// entry read: live events after it queue up while the replay is put
// together, and the window's part of the replay is taken at that same
// moment. Only what the window no longer holds is read from Redis, a fixed
// range that the moving window cannot outrun. Before the window is used,
// XINFO STREAM tells what Redis removed since (XDEL, XTRIM, DEL), and the
// window lets go of it.

const (
	// maxReplays bounds the resumes that read from Redis, per stream
	// reader, from their first page until their replay is written to the
	// client; others wait their turn (a resume from memory never waits).
	maxReplays = 2
	// replayBudget bounds the bytes of events one resume keeps from Redis;
	// past it, the oldest are cut and the client gets a replay_limit reset.
	replayBudget = 16 << 20
	// lagWait is how long a resume from an ID this instance has not read
	// yet (another instance delivered it) waits for the reader.
	lagWait = time.Second
)

// replay is the state of one resume's reading from Redis.
type replay struct {
	rt    *route
	sub   *index.Subscriber
	after streamid.ID // the client's last event ID
	limit int         // replay_limit

	fetched   []*sse.Frame // matches read from Redis, oldest first
	overLimit bool         // older matches were not kept
	truncated bool         // entries after `after` were removed from Redis
}

// resume registers sub so that it receives every event after `after`
// exactly once, and returns the events to replay first.
func (r *streamReader) resume(ctx context.Context, rt *route, sub *index.Subscriber, groups []string, after streamid.ID, limit int) (Preamble, error) {
	ix := rt.ix
	if p, done, err := r.resumeAhead(ctx, ix, sub, groups, after); done || err != nil {
		return p, err
	}
	rp := &replay{rt: rt, sub: sub, after: after, limit: limit}
	// An entry deleted from Redis is never replayed from memory: one XINFO
	// STREAM, sent after the resume began, says what was removed since
	// the window read it. A resume with nothing to replay needs none.
	r.mu.Lock()
	behind := after.Less(r.win.last)
	r.mu.Unlock()
	if behind {
		info, err := r.info(ctx)
		if err != nil {
			return Preamble{}, err
		}
		r.mu.Lock()
		r.win.retract(info)
		r.mu.Unlock()
	}

	r.mu.Lock()
	w := r.win
	fromWindow := rt.hist.replay(w, ix.Key(), sub.User(), sub.Groups(), sub.Broadcast(), streamid.Later(after, w.coverAfter))
	until, end := w.coverAfter, w.last
	ix.Add(sub)
	ix.AddGroups(sub, groups)
	r.mu.Unlock()

	if !after.Less(until) {
		return rp.finish(fromWindow, 0, end), nil
	}
	// (after, until] is no longer in the window: it is read from Redis,
	// holding a replay slot until the stream has written it.
	select {
	case r.replays <- struct{}{}:
	case <-ctx.Done():
		ix.Remove(sub)
		ix.RemoveGroups(sub, groups)
		return Preamble{}, ctx.Err()
	}
	release := sync.OnceFunc(func() { <-r.replays })
	if err := r.fetch(ctx, rp, until); err != nil {
		release()
		ix.Remove(sub)
		ix.RemoveGroups(sub, groups)
		return Preamble{}, err
	}
	p := rp.finish(append(rp.fetched, fromWindow...), len(rp.fetched), end)
	p.written = release
	return p, nil
}

// finish applies replay_limit and the reset rules to the events to replay;
// end is where the stream continues.
func (rp *replay) finish(events []*sse.Frame, fromRedis int, end streamid.ID) Preamble {
	p := Preamble{replay: events, fromRedis: fromRedis}
	switch {
	case rp.overLimit || len(events) > rp.limit:
		drop := max(0, len(events)-rp.limit)
		p.replay, p.fromRedis = events[drop:], max(0, fromRedis-drop)
		p.reset, p.reason = sse.Reset(sse.ResetReplayOver, nil), sse.ResetReplayOver
	case rp.truncated:
		p.reason = sse.ResetTruncated
		if len(events) == 0 {
			p.reset = sse.Reset(sse.ResetTruncated, &end)
		} else {
			p.reset = sse.Reset(sse.ResetTruncated, nil)
		}
	}
	return p
}

// resumeAhead handles an ID newer than the last entry read. When Redis
// never generated it, the stream was deleted or recreated: sub is
// registered with an unknown_last_event_id reset carrying the current end
// (done). Otherwise the reader lags behind the instance that sent the ID,
// and resumeAhead waits up to lagWait for it to catch up.
func (r *streamReader) resumeAhead(ctx context.Context, ix *index.Index, sub *index.Subscriber, groups []string, after streamid.ID) (p Preamble, done bool, _ error) {
	r.mu.Lock()
	ahead := r.win.last.Less(after)
	r.mu.Unlock()
	if !ahead {
		return Preamble{}, false, nil // the usual case: no timer
	}
	t := time.NewTimer(lagWait)
	defer t.Stop()
	checked := false
	for {
		r.mu.Lock()
		last := r.win.last
		if !last.Less(after) {
			r.mu.Unlock()
			return Preamble{}, false, nil
		}
		if r.moved == nil {
			r.moved = make(chan struct{})
		}
		moved := r.moved
		r.mu.Unlock()
		if !checked {
			info, err := r.info(ctx)
			if err != nil {
				return Preamble{}, true, err
			}
			if info.lastGenerated.Less(after) {
				r.mu.Lock()
				end := r.win.last
				ix.Add(sub)
				ix.AddGroups(sub, groups)
				r.mu.Unlock()
				return Preamble{reset: sse.Reset(sse.ResetUnknownID, &end), reason: sse.ResetUnknownID}, true, nil
			}
			checked = true
		}
		select {
		case <-moved:
		case <-t.C:
			return Preamble{}, true, errors.New("stream reader is behind")
		case <-ctx.Done():
			return Preamble{}, true, ctx.Err()
		}
	}
}

// fetch reads from Redis the entries after rp.after up to until, the ID
// after which the window holds everything: newest first, in pages, keeping
// the subscriber's matches until replay_limit+1 of them or replayBudget
// bytes are kept (older ones would be cut anyway), then XINFO STREAM, which
// shows whatever was trimmed or deleted before or during the reading.
func (r *streamReader) fetch(ctx context.Context, rp *replay, until streamid.ID) error {
	var newer []*sse.Frame // matches, newest first
	kept := 0
	start, end := "("+rp.after.String(), until.String()
	for done := false; !done; {
		var msgs []redis.XMessage
		var err error
		msgs, done, err = r.revRange(ctx, end, start, maxPage, r.budget)
		r.hub.m.ReplayRedisCommands.Inc()
		if err != nil {
			return err
		}
		done = done || len(msgs) == 0
		for _, m := range msgs {
			end = "(" + m.ID
			ev := rp.match(m, r.maxSize)
			if ev == nil {
				continue
			}
			if len(newer) > rp.limit || kept+ev.Len() > replayBudget {
				rp.overLimit, done = true, true
				break
			}
			newer = append(newer, ev)
			kept += ev.Len()
		}
	}
	slices.Reverse(newer)
	rp.fetched = newer

	info, err := r.info(ctx)
	if err != nil {
		return err
	}
	rp.truncated = info.trimmedAfter(rp.after)
	return nil
}

// match returns the frame of entry m when it is for the subscriber, or nil.
func (rp *replay) match(m redis.XMessage, maxSize int) *sse.Frame {
	id, ok := streamid.Parse(m.ID)
	if !ok || fieldsSize(m.Values) > maxSize {
		return nil
	}
	key := rp.rt.ix.Key()
	payload, ok := entryPayload(m.Values, key.DataField)
	if !ok {
		return nil
	}
	r, reason := message.Parse(payload, key.Fields)
	if reason != "" || !rp.wants(&r) {
		return nil
	}
	return sse.Entry(id, r.Event, payload)
}

// wants reports whether r is for the resuming stream: it names its user,
// is a broadcast it takes, or is for one of its groups.
func (rp *replay) wants(r *message.Route) bool {
	if _, named := slices.BinarySearch(r.Users, rp.sub.User()); named || (r.Broadcast && rp.sub.Broadcast()) {
		return true
	}
	for _, g := range r.Groups {
		if _, in := slices.BinarySearch(rp.sub.Groups(), g); in {
			return true
		}
	}
	return false
}

// xinfo is what XINFO STREAM says about the stream.
type xinfo struct {
	exists        bool
	first         streamid.ID // oldest retained entry
	lastGenerated streamid.ID // newest ID ever added
	maxDeleted    streamid.ID // newest ID removed by XDEL (XTRIM does not set it)
	removed       int64       // entries added minus entries retained
}

// trimmedAfter reports whether entries after id may have been removed.
// Redis keeps no record of what XTRIM removed, only the oldest retained
// entry, so this is a false alarm when the client's next entry is exactly
// that one. A stream from which nothing was ever removed is never trimmed.
func (st xinfo) trimmedAfter(id streamid.ID) bool {
	switch {
	case !st.exists:
		return true
	case st.removed <= 0:
		// Nothing was removed from this stream, but an ID older than
		// its first entry comes from an earlier stream under the same
		// key (deleted and recreated), whose entries are gone. 0-0 is
		// the starting position of a stream that was empty.
		return id != streamid.ID{} && id.Less(st.first)
	case st.first == streamid.ID{}:
		// Empty: everything up to the last ID ever generated is gone.
		return id.Less(st.lastGenerated)
	}
	return id.Less(st.first) || id.Less(st.maxDeleted)
}

// info reads XINFO STREAM.
func (r *streamReader) info(ctx context.Context) (xinfo, error) {
	info, err := r.hub.client.XInfoStream(ctx, r.key).Result()
	r.hub.m.ReplayRedisCommands.Inc()
	if err != nil {
		if isNoSuchKey(err) {
			return xinfo{}, nil
		}
		return xinfo{}, fmt.Errorf("reading stream info: %w", err)
	}
	st := xinfo{exists: true}
	st.first, _ = streamid.Parse(info.FirstEntry.ID)
	st.lastGenerated, _ = streamid.Parse(info.LastGeneratedID)
	st.maxDeleted, _ = streamid.Parse(info.MaxDeletedEntryID)
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
