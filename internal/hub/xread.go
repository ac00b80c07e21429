package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/sse"
	"github.com/caddy-notify/notify/internal/streamid"
)

// Stream mode: one XREAD BLOCK reader per (Redis, stream) feeds the same
// indexes as pub/sub, and keeps the newest entries in an in-process window
// (window.go) so that reconnecting clients are served from memory; only
// clients further behind than the window cost Redis commands (replay.go).

const (
	// readBlock bounds one XREAD BLOCK; it is also how long Destruct may
	// wait for the reader.
	readBlock = time.Second
	// readBudget bounds the bytes of one read from Redis, split between the
	// partitions, whose readers read at the same time. A page of the
	// window's loading or of a replay is read by a script that stops at
	// the budget (xrange.go); XREAD has no byte limit, so it asks for at
	// most readBudget/max_message_size entries (16 with the default 1
	// MiB): an entry is at most max_message_size, or dropped.
	readBudget = 16 << 20
	// maxPage bounds the entries of one read.
	maxPage = 1000
)

// streamReader reads a Redis Stream for a hub.
type streamReader struct {
	hub        *Hub
	key        string // the stream's key
	history    History
	maxSize    int         // max_message_size
	page       int64       // entries per XREAD: see readBudget
	budget     int         // bytes per read: readBudget split between the partitions
	noScript   atomic.Bool // Redis refused the range script: read pages (xrange.go)
	beforeRead func()
	// replays bounds the resumes reading from Redis at once, so that their
	// pages and kept events stay within a known budget.
	replays chan struct{}

	// mu guards win, moved and every route's hist. It is held while an
	// entry is appended and dispatched, which is what makes a resume's
	// switch from history to live events exact.
	mu    sync.Mutex
	win   *window
	moved chan struct{} // closed when win.last moves; nil unless a resume waits for it
}

func newStreamReader(hb *Hub, src Source, opts Options) *streamReader {
	r := &streamReader{
		hub: hb, key: src.Stream, history: src.History, beforeRead: opts.BeforeRead,
		maxSize: src.MaxMessageSize, page: readPage(src), budget: readBudget / max(src.Partitions, 1),
		replays: opts.replays,
		win:     newWindow(src.History),
	}
	if r.replays == nil {
		r.replays = make(chan struct{}, maxReplays)
	}
	return r
}

// readPage is how many entries one read asks for: readBudget split between
// the partitions, whose readers read at the same time, over
// max_message_size; at least 1, at most maxPage.
func readPage(src Source) int64 {
	return int64(min(max(readBudget/max(src.Partitions, 1)/src.MaxMessageSize, 1), maxPage))
}

// close has nothing to interrupt: an XREAD returns within readBlock.
func (r *streamReader) close() error { return nil }

// run keeps the reader alive until ctx ends. It starts by loading the
// newest entries into the window, then reads every entry after the last one
// it has seen, so a reconnect loses nothing.
func (r *streamReader) run(ctx context.Context) {
	hb := r.hub
	delay := newBackoff(hb.client)
	everUp, loaded := false, false
	for ctx.Err() == nil {
		var err error
		if !loaded {
			err = r.loadWindow(ctx)
			loaded = err == nil
		} else {
			err = r.read(ctx)
		}
		if err == nil {
			if !hb.IsUp() {
				if everUp {
					hb.m.RedisReconnects.Inc()
				}
				everUp = true
				delay.reset()
				hb.setUp(true, nil)
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		hb.setUp(false, err)
		if !delay.wait(ctx) {
			return
		}
	}
}

// loadWindow fills the window with the newest entries of the stream, in
// pages, until history_entries or history_bytes is reached, and works out
// from XINFO STREAM, before and after the pages, what the window covers: a
// resume from an older ID must go to Redis, where a trim or a deletion
// before this start (or during it) is seen.
func (r *streamReader) loadWindow(ctx context.Context) error {
	// XINFO first: an entry added after it is newer than lastGenerated and
	// is loaded now or read by the first XREAD.
	info, err := r.info(ctx)
	if err != nil {
		return err
	}
	var msgs []redis.XMessage // newest first
	bytes, full, end := 0, false, "+"
	for !full {
		page, done, err := r.revRange(ctx, end, "-", min(maxPage, r.history.Entries-len(msgs)), r.budget)
		if err != nil {
			return err
		}
		for _, m := range page {
			// An entry costs about twice its fields in the window: the
			// field map and the frame built from it.
			size := entryBaseSize + 2*min(fieldsSize(m.Values), r.maxSize)
			if len(msgs) == r.history.Entries || bytes+size > r.history.Bytes {
				full = true
				break
			}
			msgs = append(msgs, m)
			bytes += size
		}
		if done || len(page) == 0 {
			break
		}
		end = "(" + page[len(page)-1].ID
	}
	// XINFO again for what was removed: an entry deleted while the pages
	// were read is missing from them, and only this answer counts it.
	removals, err := r.info(ctx)
	if err != nil {
		return err
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(msgs) - 1; i >= 0; i-- {
		if id, ok := streamid.Parse(msgs[i].ID); ok {
			r.appendEntry(id, msgs[i].Values, false)
		}
	}
	w := r.win
	w.last = streamid.Later(w.last, info.lastGenerated)
	switch {
	case !info.exists:
		// Nothing was ever read: every ID is unknown until entries come.
	case w.n == 0:
		// Nothing retained (trimmed to 0, or entries larger than the
		// window): the window covers nothing before its end.
		w.coverAfter = streamid.Later(w.coverAfter, w.last)
	default:
		// Older entries may exist, or may have existed (trimmed, or in
		// an earlier stream under the same key, which no XINFO remembers):
		// resumes from before the oldest entry loaded go to Redis, which
		// tells what is gone. A resume from within the window does not.
		oldest := w.at(w.firstSeq).id
		w.coverAfter = streamid.Later(w.coverAfter, oldest.Prev())
		if removals.removed > 0 {
			// XDEL leaves holes a window loaded now cannot see.
			w.coverAfter = streamid.Later(w.coverAfter, removals.maxDeleted)
		}
	}
	r.signalMovedLocked()
	return nil
}

// fieldsSize is the bytes of an entry's field names and values.
func fieldsSize(fields map[string]any) int {
	n := 0
	for k, v := range fields {
		n += len(k)
		if s, ok := v.(string); ok {
			n += len(s)
		}
	}
	return n
}

// read performs one XREAD BLOCK from the last entry read and dispatches
// what it returns.
func (r *streamReader) read(ctx context.Context) error {
	if r.beforeRead != nil {
		r.beforeRead()
	}
	r.mu.Lock()
	last := r.win.last
	r.mu.Unlock()
	res, err := r.hub.client.XRead(ctx, &redis.XReadArgs{
		Streams: []string{r.key, last.String()},
		Count:   r.page,
		Block:   readBlock,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil // nothing new within readBlock
	}
	if err != nil {
		return fmt.Errorf("reading stream: %w", err)
	}
	for _, s := range res {
		for _, m := range s.Messages {
			id, ok := streamid.Parse(m.ID)
			if !ok || !last.Less(id) {
				continue
			}
			last = id
			r.hub.m.MessagesReceived.Inc()
			r.mu.Lock()
			r.appendEntry(id, m.Values, true)
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	r.signalMovedLocked()
	r.mu.Unlock()
	return nil
}

// signalMovedLocked wakes the resumes waiting for the reader to move.
func (r *streamReader) signalMovedLocked() {
	if r.moved != nil {
		close(r.moved)
		r.moved = nil
	}
}

// entryPayload extracts the message of a stream entry from its data field,
// without copying it.
func entryPayload(fields map[string]any, dataField string) ([]byte, bool) {
	s, ok := fields[dataField].(string)
	return stringBytes(s), ok
}

// entryBaseSize approximates what a window entry and its field map cost
// besides the fields' text.
const entryBaseSize = 320

// appendEntry adds an entry to the window and every index's history and,
// when live, delivers it. Called with mu held.
func (r *streamReader) appendEntry(id streamid.ID, fields map[string]any, live bool) {
	hb, w := r.hub, r.win
	e := winEntry{id: id, fields: fields, size: entryBaseSize + fieldsSize(fields)}
	if e.size-entryBaseSize > r.maxSize {
		// Kept as a placeholder, so that the window stays continuous,
		// without its fields: they are never parsed.
		if live {
			hb.drop(message.TooLarge)
		}
		w.push(winEntry{id: id, size: entryBaseSize})
		return
	}
	type routed struct {
		rt            *route
		r             message.Route
		users, groups []string
	}
	var routes []routed
	for _, rt := range *hb.snapshot.Load() {
		key := rt.ix.Key()
		payload, ok := entryPayload(fields, key.DataField)
		if !ok {
			if live {
				hb.drop(message.Malformed)
			}
			continue
		}
		rr := routed{rt: rt}
		var reason message.Drop
		rr.r, reason = message.Parse(payload, key.Fields)
		if reason == "" {
			rr.users, rr.groups, reason = hb.own(&rr.r)
		}
		if reason != "" {
			if live {
				hb.drop(reason)
			}
			continue
		}
		if fk := (frameKey{key.DataField, key.Event}); e.ev == nil || e.evKey != fk {
			// Indexes on the same fields share one frame.
			e.ev, e.evKey = sse.Entry(id, rr.r.Event, payload), fk
			e.size += e.ev.Len()
		}
		routes = append(routes, rr)
	}
	seq := w.push(e)
	for i := range routes {
		rr := &routes[i]
		rr.rt.hist.add(w, seq, rr.users, rr.r.Broadcast, rr.groups)
		if live {
			hb.count(rr.rt.ix.Deliver(&rr.r, rr.users, rr.groups, w.at(seq).frameFor(rr.rt.ix.Key())))
		}
	}
	if w.sweepDue() {
		for _, rt := range *hb.snapshot.Load() {
			rt.hist.sweep(w)
		}
	}
}

// frameFor returns the frame of e for an index with key.
func (e *winEntry) frameFor(key index.Key) *sse.Frame {
	if e.evKey == (frameKey{key.DataField, key.Event}) {
		return e.ev
	}
	payload, _ := entryPayload(e.fields, key.DataField)
	r, _ := message.Parse(payload, key.Fields)
	return sse.Entry(e.id, r.Event, payload)
}

// addRoute fills a new route's history from the window before publishing
// it: dispatch must not run in between, or an entry would be missed.
func (r *streamReader) addRoute(rt *route, publish func()) {
	ix := rt.ix
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.win
	key := ix.Key()
	for seq := w.firstSeq; seq < w.nextSeq(); seq++ {
		e := w.at(seq)
		payload, ok := entryPayload(e.fields, key.DataField)
		if !ok {
			continue
		}
		m, reason := message.Parse(payload, key.Fields)
		var users, groups []string
		if reason == "" {
			users, groups, reason = r.hub.own(&m)
		}
		if reason != "" {
			continue
		}
		if e.ev == nil {
			e.ev, e.evKey = sse.Entry(e.id, m.Event, payload), frameKey{key.DataField, key.Event}
		}
		rt.hist.add(w, seq, users, m.Broadcast, groups)
	}
	publish()
}

// register adds sub to rt's index. A stream that does not resume starts at
// the last entry read, which its position frame tells the client; one that
// resumes is replayed what it missed first (replay.go).
func (r *streamReader) register(ctx context.Context, rt *route, sub *index.Subscriber, groups []string, from *streamid.ID, replayLimit int) (Preamble, error) {
	if from != nil {
		return r.resume(ctx, rt, sub, groups, *from, replayLimit)
	}
	r.mu.Lock()
	start := r.win.last
	rt.ix.Add(sub)
	rt.ix.AddGroups(sub, groups)
	r.mu.Unlock()
	return Preamble{position: sse.Position(start)}, nil
}
