package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
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
	lat       hist
}

// streamState checks the events of one stream. It is used by the goroutine
// reading that stream only.
type streamState struct {
	user    []byte // the stream's user id as text
	lastSeq uint64
	seen    []uint64 // bitmap of received seqs
	c       *counters
	now     func() time.Time
}

// onMessage accounts for one event's data.
func (s *streamState) onMessage(data []byte) {
	rcpt, seq, ts, ok := parseMessage(data)
	if !ok {
		s.c.unparsed.Add(1)
		return
	}
	s.c.events.Add(1)
	s.c.lat.record(time.Duration(s.now().UnixNano() - ts))
	if !bytes.Equal(rcpt, s.user) {
		s.c.misrouted.Add(1)
		return
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if w >= uint64(len(s.seen)) {
		if w > 1<<24 { // a 2^30 seq is no count we published
			s.c.unparsed.Add(1)
			return
		}
		s.seen = append(s.seen, make([]uint64, int(w)+1-len(s.seen))...)
	}
	if s.seen[w]&bit != 0 {
		s.c.dup.Add(1)
		return
	}
	s.seen[w] |= bit
	s.c.unique.Add(1)
	if seq < s.lastSeq {
		s.c.ooo.Add(1)
	} else {
		s.lastSeq = seq
	}
}

// errLineTooLong is returned for an SSE line longer than the reader's buffer.
var errLineTooLong = errors.New("SSE line longer than the read buffer")

// readSSE reads an event stream until it fails, handing each event's data
// to s. Only single-line data is expected (the load tool's messages); an
// event with several data lines is counted as unparsed. Fields other than
// data (id, event, retry) are ignored; comments are counted.
func readSSE(br *bufio.Reader, s *streamState) error {
	var (
		data    []byte // copy of the pending event's data line
		pending bool
		multi   bool
	)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return errLineTooLong
			}
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
			if pending {
				if multi {
					s.c.unparsed.Add(1)
				} else {
					s.onMessage(data)
				}
			}
			pending, multi, data = false, false, data[:0]
		case line[0] == ':':
			s.c.comments.Add(1)
		case bytes.HasPrefix(line, []byte("data:")):
			v := line[5:]
			if len(v) > 0 && v[0] == ' ' {
				v = v[1:]
			}
			if pending {
				multi = true
			}
			pending = true
			data = append(data[:0], v...)
		}
	}
}
