package notify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Stream mode: one XREAD BLOCK reader per (Redis, stream) feeds the same
// indexes as pub/sub, and keeps the newest entries in an in-process window so
// that reconnecting clients are served from memory; only clients further
// behind than the window cost Redis commands (XRANGE in bounded pages).

const (
	// readBlock bounds one XREAD BLOCK; it is also how long Destruct may
	// wait for the reader.
	readBlock = time.Second
	readCount = 1000 // entries per XREAD
	// rangePage is the XRANGE page size of a replay from Redis.
	rangePage = 1000
	// maxResumeRounds bounds how often a replay from Redis chases a window
	// that moves faster than the pages can be read.
	maxResumeRounds = 8
)

// Reasons carried by the reset event.
const (
	resetTruncated  = "history_truncated"     // entries after Last-Event-ID were trimmed
	resetUnknownID  = "unknown_last_event_id" // Last-Event-ID is newer than the stream
	resetReplayOver = "replay_limit"          // more events than replay_limit were missed
)

// resetEvent builds the SSE event that tells a client its history was cut:
// it should refetch its state. id, when not zero, is where the stream
// continues, so a reconnect right after it does not repeat the reset.
func resetEvent(reason string, id *streamID) *event {
	var b []byte
	if id != nil {
		b = append(b, "id: "...)
		b = id.appendTo(b)
		b = append(b, '\n')
	}
	b = append(b, "event: reset\ndata: {\"reason\":\""...)
	b = append(b, reason...)
	b = append(b, "\"}\n\n"...)
	return &event{wire: b}
}

// historyConfig bounds the in-process window of recent entries.
type historyConfig struct {
	entries int
	bytes   int
}

// winEntry is one stream entry kept in the window.
type winEntry struct {
	id      streamID
	fields  map[string]any // the entry as read, for indexes attached later
	ev      *event         // its SSE frame for the index's data field; nil when malformed
	evField string         // data field ev was framed from
	size    int
}

// window holds the newest stream entries, oldest first, in a ring. All its
// fields and the indexes' hist maps are guarded by hub.winMu.
type window struct {
	cfg      historyConfig
	ring     []winEntry
	head     int    // ring position of the oldest entry
	n        int    // entries held
	firstSeq uint64 // sequence number of the oldest entry
	bytes    int
	// coverAfter: every entry with an ID above it, up to last, is in the
	// window. Entries at or below it must be read from Redis.
	coverAfter streamID
	last       streamID // newest entry read from Redis
	sweepAt    uint64   // firstSeq at which the hist maps are next pruned
}

func newWindow(cfg historyConfig) *window {
	return &window{cfg: cfg, ring: make([]winEntry, cfg.entries)}
}

func (w *window) at(seq uint64) *winEntry {
	return &w.ring[(w.head+int(seq-w.firstSeq))%len(w.ring)]
}

func (w *window) nextSeq() uint64 { return w.firstSeq + uint64(w.n) }

// push appends an entry, evicting the oldest ones past the bounds, and
// returns its sequence number.
func (w *window) push(e winEntry) uint64 {
	for w.n > 0 && (w.n == len(w.ring) || w.bytes+e.size > w.cfg.bytes) {
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
	w.coverAfter = old.id
	w.bytes -= old.size
	*old = winEntry{}
	w.head = (w.head + 1) % len(w.ring)
	w.n--
	w.firstSeq++
}

// histAppend records that entry seq concerns users (and everyone, when
// broadcast) in ix's per-user history. Called with winMu held.
func (ix *index) histAppend(w *window, seq uint64, users []string, broadcast bool) {
	if ix.hist == nil {
		ix.hist = make(map[string][]uint64)
	}
	for _, u := range users {
		seqs := ix.hist[u]
		// Drop what the window already evicted, so the slice stays short.
		i := 0
		for i < len(seqs) && seqs[i] < w.firstSeq {
			i++
		}
		ix.hist[u] = append(seqs[i:], seq)
	}
	if broadcast {
		i := 0
		for i < len(ix.histBcast) && ix.histBcast[i] < w.firstSeq {
			i++
		}
		ix.histBcast = append(ix.histBcast[i:], seq)
	}
}

// histSweep forgets users whose whole history was evicted; run once per
// turn of the ring, it keeps the map bounded by the users in the window.
func (ix *index) histSweep(w *window) {
	for u, seqs := range ix.hist {
		if len(seqs) == 0 || seqs[len(seqs)-1] < w.firstSeq {
			delete(ix.hist, u)
		}
	}
}

// histReplay returns the window's events for user after id, in order:
// entries naming the user, and broadcast entries when the stream takes them.
func (ix *index) histReplay(w *window, user string, broadcast bool, after streamID) []*event {
	after1 := ix.histAfter(w, ix.hist[user], after)
	var after2 []uint64
	if broadcast {
		after2 = ix.histAfter(w, ix.histBcast, after)
	}
	out := make([]*event, 0, len(after1)+len(after2))
	i, j := 0, 0
	for i < len(after1) || j < len(after2) {
		var seq uint64
		switch {
		case j == len(after2) || (i < len(after1) && after1[i] < after2[j]):
			seq = after1[i]
			i++
		case i == len(after1) || after2[j] < after1[i]:
			seq = after2[j]
			j++
		default: // in both lists: named and broadcast
			seq = after1[i]
			i++
			j++
		}
		out = append(out, w.at(seq).ev)
	}
	return out
}

// histAfter returns the tail of seqs whose entries are in the window and
// newer than id.
func (ix *index) histAfter(w *window, seqs []uint64, id streamID) []uint64 {
	start := sort.Search(len(seqs), func(i int) bool {
		return seqs[i] >= w.firstSeq && id.less(w.at(seqs[i]).id)
	})
	return seqs[start:]
}

// entryPayload extracts the message of a stream entry from its data field.
func entryPayload(fields map[string]any, dataField string) ([]byte, bool) {
	s, ok := fields[dataField].(string)
	return []byte(s), ok
}

// runStream keeps the stream reader alive until ctx ends. It starts by
// loading the newest entries into the window, then reads every entry after
// the last one it has seen, so a reconnect loses nothing.
func (hb *hub) runStream(ctx context.Context) {
	defer close(hb.done)
	backoff := backoffMin
	everUp, loaded := false, false
	for ctx.Err() == nil {
		var err error
		if !loaded {
			err = hb.loadWindow(ctx)
			loaded = err == nil
		} else {
			err = hb.readStream(ctx)
		}
		if err == nil {
			if loaded && !hb.isUp() {
				if everUp {
					metrics.redisReconnects.Inc()
				}
				everUp = true
				backoff = backoffMin
				hb.setUp(true, nil)
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		hb.setUp(false, err)
		if !sleepCtx(ctx, jitter(backoff)) {
			return
		}
		backoff = min(backoff*2, backoffMax)
	}
}

// loadWindow fills the window with the newest entries of the stream.
func (hb *hub) loadWindow(ctx context.Context) error {
	msgs, err := hb.client.XRevRangeN(ctx, hb.source, "+", "-", int64(hb.hist.entries)).Result()
	if err != nil {
		return fmt.Errorf("reading stream history: %w", err)
	}
	hb.winMu.Lock()
	defer hb.winMu.Unlock()
	w := hb.win
	if len(msgs) == hb.hist.entries {
		// The stream may hold older entries than those loaded.
		id, _ := parseStreamID(msgs[len(msgs)-1].ID)
		w.coverAfter = id
		msgs = msgs[:len(msgs)-1]
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		if id, ok := parseStreamID(msgs[i].ID); ok {
			hb.appendEntry(id, msgs[i].Values, false)
		}
	}
	return nil
}

// readStream performs one XREAD BLOCK from the last entry read and
// dispatches what it returns.
func (hb *hub) readStream(ctx context.Context) error {
	if hb.beforeRead != nil {
		hb.beforeRead()
	}
	hb.winMu.Lock()
	last := hb.win.last
	hb.winMu.Unlock()
	res, err := hb.client.XRead(ctx, &redis.XReadArgs{
		Streams: []string{hb.source, last.String()},
		Count:   readCount,
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
			id, ok := parseStreamID(m.ID)
			if !ok || !last.less(id) {
				continue
			}
			last = id
			metrics.messagesReceived.Inc()
			hb.winMu.Lock()
			hb.appendEntry(id, m.Values, true)
			hb.winMu.Unlock()
		}
	}
	return nil
}

// appendEntry adds an entry to the window and every index's history and,
// when live, delivers it. Called with winMu held, which is what makes a
// resume's switch from history to live exact.
func (hb *hub) appendEntry(id streamID, fields map[string]any, live bool) {
	w := hb.win
	// The base size approximates the entry and its field map.
	e := winEntry{id: id, fields: fields, size: 320}
	for k, v := range fields {
		if s, ok := v.(string); ok {
			e.size += len(k) + len(s)
		}
	}
	type routed struct {
		ix        *index
		users     []string
		broadcast bool
	}
	var routes []routed
	for _, ix := range *hb.routes.Load() {
		payload, ok := entryPayload(fields, ix.dataField)
		if !ok {
			if live {
				hb.drop(dropMalformed)
			}
			continue
		}
		users, broadcast, reason := route(payload, ix.field)
		if reason != "" {
			if live {
				hb.drop(reason)
			}
			continue
		}
		if e.ev == nil || e.evField != ix.dataField {
			// Indexes on one data field share one frame.
			e.ev = &event{id: id, wire: appendEvent(nil, id.String(), payload)}
			e.evField = ix.dataField
			e.size += len(e.ev.wire)
		}
		routes = append(routes, routed{ix, users, broadcast})
	}
	seq := w.push(e)
	for _, r := range routes {
		r.ix.histAppend(w, seq, r.users, r.broadcast)
		if live {
			c := r.ix.deliver(r.users, r.broadcast, w.at(seq).evFor(r.ix))
			hb.count(c)
		}
	}
	if w.firstSeq >= w.sweepAt {
		for _, ix := range *hb.routes.Load() {
			ix.histSweep(w)
		}
		w.sweepAt = w.firstSeq + uint64(len(w.ring))
	}
}

// evFor returns the frame of e for ix's data field.
func (e *winEntry) evFor(ix *index) *event {
	if e.evField == ix.dataField {
		return e.ev
	}
	payload, _ := entryPayload(e.fields, ix.dataField)
	return &event{id: e.id, wire: appendEvent(nil, e.id.String(), payload)}
}

// rebuildHistory fills a newly attached index's history from the window.
// Called with winMu held.
func (hb *hub) rebuildHistory(ix *index) {
	w := hb.win
	for seq := w.firstSeq; seq < w.nextSeq(); seq++ {
		e := w.at(seq)
		payload, ok := entryPayload(e.fields, ix.dataField)
		if !ok {
			continue
		}
		users, broadcast, reason := route(payload, ix.field)
		if reason != "" {
			continue
		}
		if e.ev == nil {
			e.ev = &event{id: e.id, wire: appendEvent(nil, e.id.String(), payload)}
			e.evField = ix.dataField
		}
		ix.histAppend(w, seq, users, broadcast)
	}
}

// resumeResult is what a stream sends before its live events.
type resumeResult struct {
	position  *event   // a new stream's starting point: an id field alone
	reset     *event   // sent first when history was cut, or nil
	reason    string   // the reset's reason
	replay    []*event // missed events, oldest first
	fromRedis int      // how many of replay came from Redis rather than memory
}

// subscribeNew registers a stream that does not resume and returns its
// starting position, the last entry read, as an SSE event made of an id
// field alone: EventSource records it as its last event ID without
// dispatching anything, so a client that reconnects before its first event
// resumes from there and misses nothing.
func (hb *hub) subscribeNew(ix *index, sub *subscriber) *event {
	hb.winMu.Lock()
	cut := hb.win.last
	ix.add(sub)
	hb.winMu.Unlock()
	b := append([]byte("id: "), cut.String()...)
	return &event{id: cut, wire: append(b, "\n\n"...)}
}

// resume registers sub so that it receives every event after `after`
// exactly once: the events already read are returned for replay, and sub is
// added to the index under winMu, which dispatch also holds, so the first
// live event sub receives is the one following the last one replayed.
//
// Entries newer than the window's coverAfter are served from memory. Older
// ones are read from Redis in pages; since the window keeps moving while
// they are read, reading goes on until the pages reach the window's current
// start, then both are joined under the lock.
func (hb *hub) resume(ctx context.Context, ix *index, sub *subscriber, after streamID, limit int) (resumeResult, error) {
	var (
		fetched   []fetchedEntry // from Redis, oldest first, at most limit+1
		overLimit bool           // fetched had to drop older matches
		cursor    = after        // Redis has been read up to here
		truncated bool
		infoRead  bool
	)
	for round := 0; round < maxResumeRounds; round++ {
		hb.winMu.Lock()
		w := hb.win
		switch {
		case w.last.less(after):
			// Newer than anything read: the reader lags behind the
			// instance that sent this ID, or the stream was deleted or
			// recreated. Redis tells which.
			last := w.last
			hb.winMu.Unlock()
			info, err := hb.streamInfo(ctx)
			if err != nil {
				return resumeResult{}, err
			}
			if info.lastGenerated.less(after) {
				hb.winMu.Lock()
				cut := hb.win.last
				ix.add(sub)
				hb.winMu.Unlock()
				return resumeResult{reset: resetEvent(resetUnknownID, &cut), reason: resetUnknownID}, nil
			}
			if !hb.waitLast(ctx, last) {
				return resumeResult{}, errors.New("stream reader is behind")
			}
			continue
		case !after.less(w.coverAfter) || !cursor.less(w.coverAfter):
			// Everything after `after` is in fetched or the window.
			res := resumeResult{}
			for _, f := range fetched {
				if !w.coverAfter.less(f.id) { // newer ones are in the window
					res.replay = append(res.replay, f.ev)
				}
			}
			res.fromRedis = len(res.replay)
			from := after
			if from.less(w.coverAfter) {
				from = w.coverAfter
			}
			res.replay = append(res.replay, ix.histReplay(w, sub.user, sub.broadcast, from)...)
			cut := w.last
			ix.add(sub)
			hb.winMu.Unlock()
			if overLimit || len(res.replay) > limit {
				drop := max(0, len(res.replay)-limit)
				res.replay = res.replay[drop:]
				res.fromRedis = max(0, res.fromRedis-drop)
				res.reset, res.reason = resetEvent(resetReplayOver, nil), resetReplayOver
			} else if truncated {
				res.reason = resetTruncated
				if len(res.replay) == 0 {
					res.reset = resetEvent(resetTruncated, &cut)
				} else {
					res.reset = resetEvent(resetTruncated, nil)
				}
			}
			return res, nil
		}
		target := w.coverAfter
		hb.winMu.Unlock()

		if !infoRead {
			info, err := hb.streamInfo(ctx)
			if err != nil {
				return resumeResult{}, err
			}
			truncated = info.trimmedAfter(after)
			infoRead = true
		}
		more, next, dropped, err := hb.fetchRange(ctx, ix, sub, cursor, target, limit+1)
		if err != nil {
			return resumeResult{}, err
		}
		overLimit = overLimit || dropped
		fetched = append(fetched, more...)
		if len(fetched) > limit+1 {
			fetched = fetched[len(fetched)-limit-1:]
			overLimit = true
		}
		if next == cursor {
			// Redis holds nothing after the cursor, yet the window has
			// moved past it: those entries were trimmed and evicted.
			truncated = true
			next = target
		}
		cursor = next
	}
	return resumeResult{}, errors.New("stream history moves faster than it can be replayed")
}

// fetchedEntry is one entry read from Redis during a replay.
type fetchedEntry struct {
	id streamID
	ev *event
}

// fetchRange reads entries after `from` from Redis in pages until it
// reaches `until` or the end of the stream, and returns the newest `keep`
// of those for sub (dropped tells that there were more). next is the newest
// ID read, or from when there was none.
func (hb *hub) fetchRange(ctx context.Context, ix *index, sub *subscriber, from, until streamID, keep int) (out []fetchedEntry, next streamID, dropped bool, _ error) {
	next = from
	for {
		msgs, err := hb.client.XRangeN(ctx, hb.source, "("+next.String(), "+", rangePage).Result()
		metrics.replayRedisCommands.Inc()
		if err != nil {
			return nil, from, false, fmt.Errorf("reading stream history: %w", err)
		}
		for _, m := range msgs {
			id, ok := parseStreamID(m.ID)
			if !ok {
				continue
			}
			next = id
			payload, ok := entryPayload(m.Values, ix.dataField)
			if !ok {
				continue
			}
			users, broadcast, reason := route(payload, ix.field)
			if reason != "" {
				continue
			}
			if slices.Contains(users, sub.user) || (sub.broadcast && broadcast) {
				out = append(out, fetchedEntry{id, &event{id: id, wire: appendEvent(nil, id.String(), payload)}})
			}
		}
		if len(out) > 2*keep {
			// Bound the memory one far-behind client can take.
			out = append(out[:0], out[len(out)-keep:]...)
			dropped = true
		}
		if len(msgs) < rangePage || !next.less(until) {
			return out, next, dropped, nil
		}
	}
}

// streamState is what XINFO STREAM says about the stream.
type streamState struct {
	exists        bool
	first         streamID // oldest retained entry
	lastGenerated streamID // newest ID ever added
	maxDeleted    streamID // newest ID removed by XDEL (XTRIM does not set it)
	removed       int64    // entries added minus entries retained
}

// trimmedAfter reports whether entries after id may have been removed.
// Redis keeps no record of what XTRIM removed, only the oldest retained
// entry, so this is a false alarm when the client's next entry is exactly
// that one. A stream from which nothing was ever removed is never trimmed.
func (st streamState) trimmedAfter(id streamID) bool {
	if !st.exists {
		return true
	}
	if st.removed <= 0 {
		return false
	}
	return id.less(st.first) || id.less(st.maxDeleted)
}

func (hb *hub) streamInfo(ctx context.Context) (streamState, error) {
	info, err := hb.client.XInfoStream(ctx, hb.source).Result()
	metrics.replayRedisCommands.Inc()
	if err != nil {
		if isNoSuchKey(err) {
			return streamState{}, nil
		}
		return streamState{}, fmt.Errorf("reading stream info: %w", err)
	}
	st := streamState{exists: true}
	st.first, _ = parseStreamID(info.FirstEntry.ID)
	st.lastGenerated, _ = parseStreamID(info.LastGeneratedID)
	st.maxDeleted, _ = parseStreamID(info.MaxDeletedEntryID)
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

// waitLast waits up to a second for the reader to move past last.
func (hb *hub) waitLast(ctx context.Context, last streamID) bool {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		hb.winMu.Lock()
		moved := last.less(hb.win.last)
		hb.winMu.Unlock()
		if moved {
			return true
		}
		if !sleepCtx(ctx, 10*time.Millisecond) {
			return false
		}
	}
	return false
}

// frames returns what a stream writes after its retry field, in order.
func (res resumeResult) frames() []*event {
	if res.position == nil && res.reset == nil && len(res.replay) == 0 {
		return nil
	}
	out := make([]*event, 0, 2+len(res.replay))
	if res.position != nil {
		out = append(out, res.position)
	}
	if res.reset != nil {
		out = append(out, res.reset)
	}
	return append(out, res.replay...)
}

// record counts a resume in the metrics and the debug log.
func (res resumeResult) record(l *zap.Logger) {
	fromMemory := len(res.replay) - res.fromRedis
	metrics.replayed.WithLabelValues("memory").Add(float64(fromMemory))
	metrics.replayed.WithLabelValues("redis").Add(float64(res.fromRedis))
	if res.reason != "" {
		metrics.resets.WithLabelValues(res.reason).Inc()
	}
	if c := l.Check(zap.DebugLevel, "stream resumed"); c != nil {
		c.Write(zap.Int("replayed_memory", fromMemory), zap.Int("replayed_redis", res.fromRedis),
			zap.String("reset", res.reason))
	}
}
