package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Stream mode: one XREAD BLOCK reader per (Redis, stream) feeds the same
// indexes as pub/sub, and keeps the newest entries in an in-process window
// (window.go) so that reconnecting clients are served from memory; only
// clients further behind than the window cost Redis commands (replay.go).

const (
	// readBlock bounds one XREAD BLOCK; it is also how long Destruct may
	// wait for the reader.
	readBlock = time.Second
	// readBudget bounds the bytes of one read from Redis (XREAD, a page of
	// the window's loading or of a replay) when every entry is within
	// max_message_size: Redis has no byte limit, so a read asks for at most
	// readBudget/max_message_size entries (16 with the default 1 MiB), and
	// never more than maxPage.
	readBudget = 16 << 20
	maxPage    = 1000
)

// streamReader reads a Redis Stream for a hub.
type streamReader struct {
	hub        *hub
	key        string // the stream's key
	history    historyConfig
	maxSize    int   // max_message_size
	page       int64 // entries per read: see readBudget
	beforeRead func()
	// replays bounds the resumes reading from Redis at once, so that their
	// pages and kept events stay within a known budget.
	replays chan struct{}

	// mu guards win, moved and every index's hist. It is held while an
	// entry is appended and dispatched, which is what makes a resume's
	// switch from history to live events exact.
	mu    sync.Mutex
	win   *window
	moved chan struct{} // closed when win.last moves; nil unless a resume waits for it
}

func newStreamReader(hb *hub, src source) *streamReader {
	r := &streamReader{
		hub: hb, key: src.stream, history: src.history, beforeRead: src.beforeRead,
		maxSize: src.maxMessageSize, page: readPage(src),
		replays: src.replays,
		win:     newWindow(src.history),
	}
	if r.replays == nil {
		r.replays = make(chan struct{}, maxReplays)
	}
	return r
}

// readPage is how many entries one read asks for: readBudget split between
// the partitions, whose readers read at the same time, over
// max_message_size; at least 1, at most maxPage.
func readPage(src source) int64 {
	return int64(min(max(readBudget/max(src.partitions, 1)/src.maxMessageSize, 1), maxPage))
}

// close has nothing to interrupt: an XREAD returns within readBlock.
func (r *streamReader) close() error { return nil }

// run keeps the reader alive until ctx ends. It starts by loading the
// newest entries into the window, then reads every entry after the last one
// it has seen, so a reconnect loses nothing.
func (r *streamReader) run(ctx context.Context) {
	hb := r.hub
	delay := hb.newBackoff()
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
			if !hb.isUp() {
				if everUp {
					metrics.redisReconnects.Inc()
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
		page, err := r.hub.client.XRevRangeN(ctx, r.key, end, "-", r.page).Result()
		if err != nil {
			return fmt.Errorf("reading stream history: %w", err)
		}
		for _, m := range page {
			// An entry costs about twice its fields in the window: the
			// field map and the frame built from it.
			size := entryBaseSize + 2*min(fieldsSize(m.Values), r.maxSize)
			if len(msgs) == r.history.entries || bytes+size > r.history.bytes {
				full = true
				break
			}
			msgs = append(msgs, m)
			bytes += size
		}
		if int64(len(page)) < r.page {
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
		if id, ok := parseEntryID(msgs[i].ID); ok {
			r.appendEntry(id, msgs[i].Values, false)
		}
	}
	w := r.win
	w.last = laterID(w.last, info.lastGenerated)
	switch {
	case !info.exists:
		// Nothing was ever read: every ID is unknown until entries come.
	case w.n == 0:
		// Nothing retained (trimmed to 0, or entries larger than the
		// window): the window covers nothing before its end.
		w.coverAfter = laterID(w.coverAfter, w.last)
	default:
		// Older entries may exist, or may have existed (trimmed, or in
		// an earlier stream under the same key, which no XINFO remembers):
		// resumes from before the oldest entry loaded go to Redis, which
		// tells what is gone. A resume from within the window does not.
		oldest := w.at(w.firstSeq).id
		w.coverAfter = laterID(w.coverAfter, oldest.prev())
		if removals.removed > 0 {
			// XDEL leaves holes a window loaded now cannot see.
			w.coverAfter = laterID(w.coverAfter, removals.maxDeleted)
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
			id, ok := parseEntryID(m.ID)
			if !ok || !last.less(id) {
				continue
			}
			last = id
			metrics.messagesReceived.Inc()
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
func (r *streamReader) appendEntry(id entryID, fields map[string]any, live bool) {
	hb, w := r.hub, r.win
	e := winEntry{id: id, fields: fields, size: entryBaseSize + fieldsSize(fields)}
	if e.size-entryBaseSize > r.maxSize {
		// Kept as a placeholder, so that the window stays continuous,
		// without its fields: they are never parsed.
		if live {
			hb.drop(dropTooLarge)
		}
		w.push(winEntry{id: id, size: entryBaseSize})
		return
	}
	type routed struct {
		ix        *index
		users     []string
		broadcast bool
	}
	var routes []routed
	for _, ix := range *hb.routes.Load() {
		payload, ok := entryPayload(fields, ix.key.dataField)
		if !ok {
			if live {
				hb.drop(dropMalformed)
			}
			continue
		}
		users, broadcast, reason := route(payload, ix.key.recipientField)
		if reason == "" {
			users, reason = hb.ownUsers(users, broadcast)
		}
		if reason != "" {
			if live {
				hb.drop(reason)
			}
			continue
		}
		if e.ev == nil || e.evField != ix.key.dataField {
			// Indexes on one data field share one frame.
			e.ev, e.evField = entryEvent(id, payload), ix.key.dataField
			e.size += len(e.ev.wire)
		}
		routes = append(routes, routed{ix, users, broadcast})
	}
	seq := w.push(e)
	for _, rt := range routes {
		rt.ix.hist.add(w, seq, rt.users, rt.broadcast)
		if live {
			hb.count(rt.ix.deliver(rt.users, rt.broadcast, w.at(seq).eventFor(rt.ix.key.dataField)))
		}
	}
	if w.sweepDue() {
		for _, ix := range *hb.routes.Load() {
			ix.hist.sweep(w)
		}
	}
}

// eventFor returns the frame of e for the data field.
func (e *winEntry) eventFor(dataField string) *event {
	if e.evField == dataField {
		return e.ev
	}
	payload, _ := entryPayload(e.fields, dataField)
	return entryEvent(e.id, payload)
}

// addIndex fills a new index's history from the window before publishing
// it: dispatch must not run in between, or an entry would be missed.
func (r *streamReader) addIndex(ix *index, publish func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.win
	for seq := w.firstSeq; seq < w.nextSeq(); seq++ {
		e := w.at(seq)
		payload, ok := entryPayload(e.fields, ix.key.dataField)
		if !ok {
			continue
		}
		users, broadcast, reason := route(payload, ix.key.recipientField)
		if reason == "" {
			users, reason = r.hub.ownUsers(users, broadcast)
		}
		if reason != "" {
			continue
		}
		if e.ev == nil {
			e.ev, e.evField = entryEvent(e.id, payload), ix.key.dataField
		}
		ix.hist.add(w, seq, users, broadcast)
	}
	publish()
}

// register adds sub to ix. A stream that does not resume starts at the last
// entry read, which its position event tells the client; one that resumes
// is replayed what it missed first (replay.go).
func (r *streamReader) register(ctx context.Context, ix *index, sub *subscriber, from *entryID, replayLimit int) (preamble, error) {
	if from != nil {
		return r.resume(ctx, ix, sub, *from, replayLimit)
	}
	r.mu.Lock()
	start := r.win.last
	ix.add(sub)
	r.mu.Unlock()
	return preamble{position: positionEvent(start)}, nil
}
