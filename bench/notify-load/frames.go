package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// frame is one block of an event stream, up to its blank line: an event, a
// comment (heartbeat), a retry or an id-only position. The memory workloads
// send events of megabytes, so only the first bytes of the data are kept.
type frame struct {
	event     string // the event name; "" for a plain message
	id        string
	hasID     bool
	retry     bool
	comments  int
	dataLines int
	dataLen   int    // bytes of data, its lines joined by '\n' as EventSource does
	data      []byte // the first bytes of the data (frameReader.prefix)
}

// isEvent reports whether the frame carries data (EventSource fires an event).
func (f *frame) isEvent() bool { return f.dataLines > 0 }

// frameReader reads an event stream frame by frame, whatever the length of
// its lines, holding at most its reader's buffer and prefix bytes of data.
type frameReader struct {
	br     *bufio.Reader
	prefix int   // data bytes kept per frame
	n      int64 // bytes read so far
}

func newFrameReader(r io.Reader, prefix int) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(r, 4096), prefix: prefix}
}

// next returns the next frame that holds at least one line; blank lines
// between frames are skipped. An error ends the stream (io.EOF when it
// ended between frames).
func (r *frameReader) next() (frame, error) {
	var f frame
	lines := 0
	for {
		chunk, err := r.br.ReadSlice('\n')
		r.n += int64(len(chunk))
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if err == io.EOF && len(chunk) == 0 && lines == 0 {
				return f, io.EOF
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return f, err
		}
		full := err == nil // the chunk ends the line
		line := chunk
		if full {
			line = trimEOL(line)
		}
		if full && len(line) == 0 {
			if lines > 0 {
				return f, nil
			}
			continue
		}
		lines++
		// The field name is in the first chunk: a line is at least the
		// reader's buffer (4 KiB) before a chunk is cut.
		name, v := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, v = line[:i], line[i+1:]
			if len(v) > 0 && v[0] == ' ' {
				v = v[1:]
			}
		}
		switch {
		case len(line) > 0 && line[0] == ':':
			f.comments++
		case string(name) == "data":
			if f.dataLines > 0 {
				f.dataLen++
				f.keep([]byte{'\n'}, r.prefix)
			}
			f.dataLines++
			f.dataLen += len(v)
			f.keep(v, r.prefix)
			for !full { // the rest of a long data line
				chunk, err = r.br.ReadSlice('\n')
				r.n += int64(len(chunk))
				if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
					if err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					return f, err
				}
				full = err == nil
				if full {
					chunk = trimEOL(chunk)
				}
				f.dataLen += len(chunk)
				f.keep(chunk, r.prefix)
			}
		case string(name) == "event":
			f.event = string(v)
		case string(name) == "id":
			f.id, f.hasID = string(v), true
		case string(name) == "retry":
			f.retry = true
		}
		for !full { // the rest of a long line that is not data: skipped
			chunk, err = r.br.ReadSlice('\n')
			r.n += int64(len(chunk))
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return f, err
			}
			full = err == nil
		}
	}
}

// keep appends b to the frame's data up to prefix bytes.
func (f *frame) keep(b []byte, prefix int) {
	if room := prefix - len(f.data); room > 0 {
		f.data = append(f.data, b[:min(room, len(b))]...)
	}
}

// trimEOL removes the line's "\n" or "\r\n".
func trimEOL(b []byte) []byte {
	b = b[:len(b)-1]
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}
