package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Messages published by the load tool have a fixed layout, so that a
// receiver can check them without a JSON decoder:
//
//	{"recipient_id":"<user>","seq":<n>,"ts":<unix nanos>,"pad":"<x…>"}
//
// seq numbers the events of one user from 1; event k of a run (from 0) goes
// to user k mod U with seq k/U+1, so every receiver can work out how many
// events its user was sent from the total alone.
const (
	msgPrefix = `{"recipient_id":"`
	msgSeq    = `","seq":`
	msgTS     = `,"ts":`
)

// appendMessage appends the message of one event to dst.
func appendMessage(dst []byte, user int, seq uint64, ts int64, pad int) []byte {
	dst = append(dst, msgPrefix...)
	dst = strconv.AppendInt(dst, int64(user), 10)
	dst = append(dst, msgSeq...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, msgTS...)
	dst = strconv.AppendInt(dst, ts, 10)
	if pad > 0 {
		dst = append(dst, `,"pad":"`...)
		for range pad {
			dst = append(dst, 'x')
		}
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// bigMessage is a load-tool message for user with seq, stamped ts, padded
// to size bytes in all (or as short as it can be).
func bigMessage(user int, seq uint64, ts int64, size int) []byte {
	n := len(appendMessage(nil, user, seq, ts, 0)) + len(`,"pad":""`)
	return appendMessage(make([]byte, 0, max(size, n)), user, seq, ts, max(size-n, 0))
}

// parseMessage reads the recipient, seq and ts of a message without
// allocating. ok is false when data does not have the load tool's layout.
func parseMessage(data []byte) (recipient []byte, seq uint64, ts int64, ok bool) {
	if !bytes.HasPrefix(data, []byte(msgPrefix)) {
		return nil, 0, 0, false
	}
	data = data[len(msgPrefix):]
	end := bytes.IndexByte(data, '"')
	if end < 0 {
		return nil, 0, 0, false
	}
	recipient, data = data[:end], data[end:]
	if !bytes.HasPrefix(data, []byte(msgSeq)) {
		return nil, 0, 0, false
	}
	data = data[len(msgSeq):]
	s, n := leadingUint(data)
	if n == 0 {
		return nil, 0, 0, false
	}
	data = data[n:]
	if !bytes.HasPrefix(data, []byte(msgTS)) {
		return nil, 0, 0, false
	}
	t, n := leadingUint(data[len(msgTS):])
	if n == 0 {
		return nil, 0, 0, false
	}
	return recipient, s, int64(t), true
}

func leadingUint(b []byte) (v uint64, n int) {
	for n < len(b) && n < 19 && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, n
}

// counters are one worker's totals, shared by all its streams.
type counters struct {
	events    atomic.Uint64 // events carrying a load-tool message
	unique    atomic.Uint64 // first receipt of (user, seq) on a stream of that user
	dup       atomic.Uint64 // a (user, seq) a stream had already received
	ooo       atomic.Uint64 // a seq lower than one the stream already received
	misrouted atomic.Uint64 // a message for another user
	unparsed  atomic.Uint64 // an event whose data is not a load-tool message
	comments  atomic.Uint64 // SSE comments (heartbeats)
	resets    atomic.Uint64 // events named reset (stream mode): not deliveries
	gapRecv   atomic.Uint64 // first receipts of a seq in a stream's unresumable gap (not in unique)
	// An event whose id is not above the id of the stream's previous event
	// (ids <a>-<b> or <a>:<b>, compared as number pairs), across reconnects.
	idRegress atomic.Uint64
	// Resumes (a reconnect with Last-Event-ID) whose first event skipped
	// events of the stream's user that it never received, and how many.
	resumeGaps      atomic.Uint64
	resumeGapEvents atomic.Uint64
	lat             hist
	latCatch        hist // of events published before their stream reconnected (replayed): also in lat
}

// streamState checks the events of one stream. It is used by the goroutine
// reading that stream only, and outlives the stream's connections: a stream
// that reconnects keeps its bitmap, so a replayed event it already had is a
// duplicate and one it never gets is lost. What the worker reads at the end
// of a run (the bitmap, the stream's own counts and its connection record)
// is guarded by mu.
type streamState struct {
	user    []byte // the stream's user id as text
	userN   int
	lastSeq uint64
	seen    []uint64 // bitmap of received seqs
	lastID  []byte   // the last event ID (SSE id: field of dispatched events); nil: none yet
	// gapLo..gapHi (seqs, gapLo > 0) is the unresumable gap of a stream that
	// reconnected without a last event ID: those events may or may not
	// arrive, and are neither expected nor counted in unique.
	gapLo, gapHi uint64
	resumedNs    int64 // when the stream reconnected (unix ns); 0: it did not
	c            *counters
	now          func() time.Time
	// fan > 0: the run's events are fan-out messages (fan.go) to group
	// seq mod fan, and this stream's user is in group userN mod fan.
	fan uint64

	retry time.Duration // the last retry field received; 0: none yet

	// The last message id (see counters.idRegress); resuming is set by a
	// reconnect with Last-Event-ID, resumeSeq being the highest seq
	// received before it.
	lastMsgID [2]uint64
	hasMsgID  bool
	resuming  bool
	resumeSeq uint64

	mu   sync.Mutex
	uniq uint64 // this stream's first receipts (in counters.unique)
	dups uint64 // this stream's duplicates (in counters.dup)
	conn connRecord
}

// connRecord is how a stream's connections went (reconnecting streams):
// every end the server caused, and when the stream was last up.
type connRecord struct {
	ends       uint32 // connections the server ended (or broke)
	reconnects uint32 // connections re-established after an end
	failures   uint32 // reconnect attempts that failed
	firstEnd   int64  // unix ns of the first end; 0: never ended
	lastEnd    int64  // unix ns of the last end
	upNs       int64  // unix ns of the last 200 after an end
	down       bool   // ended and not re-established (yet)
}

// stats returns the stream's counts and connection record.
func (s *streamState) stats() (uniq, dups uint64, rec connRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uniq, s.dups, s.conn
}

// ended records that the server ended (or broke) the stream's connection.
func (s *streamState) ended(ns int64) {
	s.mu.Lock()
	s.conn.ends++
	if s.conn.firstEnd == 0 {
		s.conn.firstEnd = ns
	}
	s.conn.lastEnd = ns
	s.conn.down = true
	s.mu.Unlock()
}

// reconnected records a connection re-established after an end, at ns;
// resumed says it sent Last-Event-ID.
func (s *streamState) reconnected(ns int64, resumed bool) {
	s.mu.Lock()
	s.conn.reconnects++
	s.conn.upNs = ns
	s.conn.down = false
	s.mu.Unlock()
	s.resuming, s.resumeSeq = resumed, s.lastSeq
}

// reconnectFailed records a reconnect attempt that failed.
func (s *streamState) reconnectFailed() {
	s.mu.Lock()
	s.conn.failures++
	s.mu.Unlock()
}

// lastLoss returns the highest seq of 1..sent the stream never received (0:
// none) and the lowest seq above it that it received (0: none).
func (s *streamState) lastLoss(sent uint64) (lost, after uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	has := func(q uint64) bool {
		w := q / 64
		return w < uint64(len(s.seen)) && s.seen[w]&(1<<(q%64)) != 0
	}
	for q := sent; q >= 1; q-- {
		if !has(q) {
			lost = q
			break
		}
	}
	if lost == 0 {
		return 0, 0
	}
	for q := lost + 1; q <= sent; q++ {
		if has(q) {
			return lost, q
		}
	}
	return lost, 0
}

// onMessage accounts for one event's data.
func (s *streamState) onMessage(data []byte) {
	var (
		seq  uint64
		ts   int64
		ok   bool
		mine bool
	)
	if s.fan > 0 {
		var g uint64
		seq, ts, g, ok = parseFanMessage(data)
		mine = g == uint64(s.userN)%s.fan
	} else {
		var rcpt []byte
		rcpt, seq, ts, ok = parseMessage(data)
		mine = bytes.Equal(rcpt, s.user)
	}
	if !ok {
		s.c.unparsed.Add(1)
		return
	}
	s.c.events.Add(1)
	lat := time.Duration(s.now().UnixNano() - ts)
	s.c.lat.record(lat)
	if ts < s.resumedNs {
		s.c.latCatch.record(lat)
	}
	if !mine {
		s.c.misrouted.Add(1)
		return
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if w >= uint64(len(s.seen)) && w > 1<<24 { // a 2^30 seq is no count we published
		s.c.unparsed.Add(1)
		return
	}
	s.mu.Lock()
	if w >= uint64(len(s.seen)) {
		s.seen = append(s.seen, make([]uint64, int(w)+1-len(s.seen))...)
	}
	if s.seen[w]&bit != 0 {
		s.dups++
		s.mu.Unlock()
		s.c.dup.Add(1)
		return
	}
	s.seen[w] |= bit
	inGap := s.gapLo > 0 && seq >= s.gapLo && seq <= s.gapHi
	if !inGap {
		s.uniq++
	}
	var skipped uint64
	if s.resuming {
		// The first new event after a resume must be the one after the
		// last received before it, unless that one arrived some other way.
		for q := s.resumeSeq + 1; q < seq; q++ {
			if s.seen[q/64]&(1<<(q%64)) == 0 {
				skipped++
			}
		}
		s.resuming = false
	}
	s.mu.Unlock()
	if skipped > 0 {
		s.c.resumeGaps.Add(1)
		s.c.resumeGapEvents.Add(skipped)
	}
	if inGap {
		s.c.gapRecv.Add(1)
	} else {
		s.c.unique.Add(1)
	}
	if seq < s.lastSeq {
		s.c.ooo.Add(1)
	} else {
		s.lastSeq = seq
	}
}

// onMessageID checks the id of a message event against the stream's
// previous one: ids must rise, across reconnects too. Ids that are not two
// numbers (<a>-<b>, as Redis entry IDs; <a>:<b>, as nchan's) are not checked.
func (s *streamState) onMessageID(id []byte) {
	v, ok := parseIDPair(id)
	if !ok {
		return
	}
	if s.hasMsgID && (v[0] < s.lastMsgID[0] || v[0] == s.lastMsgID[0] && v[1] <= s.lastMsgID[1]) {
		s.c.idRegress.Add(1)
	}
	s.lastMsgID, s.hasMsgID = v, true
}

// parseIDPair reads an id of two decimal numbers separated by '-' or ':'.
func parseIDPair(id []byte) ([2]uint64, bool) {
	var v [2]uint64
	i := bytes.IndexAny(id, "-:")
	if i <= 0 || i == len(id)-1 {
		return v, false
	}
	a, n := leadingUint(id[:i])
	if n != i {
		return v, false
	}
	b, n := leadingUint(id[i+1:])
	if n != len(id)-i-1 {
		return v, false
	}
	v[0], v[1] = a, b
	return v, true
}

// readSSE reads an event stream until it fails, handing each event's data
// to s. Only single-line data is expected (the load tool's messages); an
// event with several data lines is counted as unparsed; of a line longer
// than br's buffer only the start is read. As an EventSource
// does, the id field of an event becomes the stream's last event ID when the
// event is dispatched (at its blank line, even without data; an id holding
// NUL is ignored), so a connection cut in the middle of an event does not
// move it. An event named reset is counted apart, never as a delivery; one
// with another name is unparsed. A retry field sets the stream's reconnect
// delay (s.retry); comments are counted.
func readSSE(br *bufio.Reader, s *streamState) error {
	var (
		data    []byte // copy of the pending event's data line
		pending bool
		multi   bool
		id      []byte // the pending event's id field
		hasID   bool
		event   []byte // the pending event's name
		head    []byte // the start of a line longer than the buffer
	)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer (a fan-out message listing
			// thousands of users): its start holds all the receiver reads;
			// the rest is skipped.
			head = append(head[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			line = append(head, '\n')
		}
		if err != nil {
			if err == io.EOF && len(line) == 0 {
				return io.EOF
			}
			return err
		}
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		switch {
		case len(line) == 0: // dispatch
			if hasID {
				s.lastID = append(s.lastID[:0], id...)
			}
			switch {
			case string(event) == "reset":
				s.c.resets.Add(1)
			case !pending:
			case multi || len(event) > 0 && string(event) != "message":
				s.c.unparsed.Add(1)
			default:
				if hasID {
					s.onMessageID(id)
				}
				s.onMessage(data)
			}
			pending, multi, data = false, false, data[:0]
			hasID, id, event = false, id[:0], event[:0]
		case line[0] == ':':
			s.c.comments.Add(1)
		default:
			name, v := line, []byte(nil)
			if i := bytes.IndexByte(line, ':'); i >= 0 {
				name, v = line[:i], line[i+1:]
				if len(v) > 0 && v[0] == ' ' {
					v = v[1:]
				}
			}
			switch string(name) {
			case "data":
				if pending {
					multi = true
				}
				pending = true
				data = append(data[:0], v...)
			case "id":
				if bytes.IndexByte(v, 0) < 0 {
					id, hasID = append(id[:0], v...), true
				}
			case "event":
				event = append(event[:0], v...)
			case "retry":
				if ms, n := leadingUint(v); n == len(v) && n > 0 {
					s.retry = time.Duration(ms) * time.Millisecond
				}
			}
		}
	}
}
