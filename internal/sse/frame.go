// Package sse builds every frame the handler writes on an event stream:
// events (pub/sub messages and stream entries), the position and reset
// frames of stream mode, the revoked event, the retry field and the
// heartbeat. A message is framed once, whatever the number of streams it
// reaches.
package sse

import (
	"bytes"
	"strconv"
	"time"

	"github.com/caddy-notify/notify/internal/streamid"
)

// Frame is one pre-framed chunk of the SSE wire format. The same Frame is
// queued to every stream that receives it; it is never modified once built.
type Frame struct {
	wire []byte
}

// Bytes returns the frame as it goes on the wire. The caller must not
// modify them.
func (f *Frame) Bytes() []byte { return f.wire }

// Len is the frame's size on the wire.
func (f *Frame) Len() int { return len(f.wire) }

// Ping is the heartbeat: an SSE comment, which clients ignore but which
// keeps proxies and NATs from closing an idle connection.
var Ping = &Frame{wire: []byte(": ping\n\n")}

// Message frames a pub/sub message: an event named name ("" for an
// unnamed one, which clients dispatch as "message") with the payload as
// its data.
func Message(name string, payload []byte) *Frame {
	return &Frame{wire: appendEvent(make([]byte, 0, frameSize("", name, payload)), "", name, payload)}
}

// Entry frames the message of a Redis Stream entry, with the entry ID as the
// SSE id so that the client can resume after it.
func Entry(id streamid.ID, name string, payload []byte) *Frame {
	sid := id.String()
	return &Frame{wire: appendEvent(make([]byte, 0, frameSize(sid, name, payload)), sid, name, payload)}
}

// frameSize is at least the length of appendEvent's output, so that a frame
// is allocated once at its size instead of growing by doubling: for a large
// message that would cost several times its size.
func frameSize(id, name string, data []byte) int {
	lines := 1 + bytes.Count(data, []byte{'\n'}) + bytes.Count(data, []byte{'\r'})
	return len("id: \nevent: \n") + len(id) + len(name) + len(data) + lines*len("data: \n") + 1
}

// Position is an id field alone: EventSource records it as its last event
// ID without dispatching anything. A new stream-mode stream starts with
// one, so that a client reconnecting before its first event resumes from
// where it started.
func Position(id streamid.ID) *Frame {
	b := append([]byte("id: "), id.String()...)
	return &Frame{wire: append(b, "\n\n"...)}
}

// Reasons carried by the reset event.
const (
	ResetTruncated  = "history_truncated"     // entries after Last-Event-ID were removed
	ResetUnknownID  = "unknown_last_event_id" // Last-Event-ID is newer than the stream
	ResetReplayOver = "replay_limit"          // more events than replay_limit were missed
)

// Reset tells a client that its history was cut and it should refetch its
// state. id, when not nil, is where the stream continues, so that a
// reconnect right after it does not repeat the reset.
func Reset(reason string, id *streamid.ID) *Frame {
	var b []byte
	if id != nil {
		b = append(b, "id: "...)
		b = id.AppendTo(b)
		b = append(b, '\n')
	}
	b = append(b, "event: reset\ndata: {\"reason\":\""...)
	b = append(b, reason...)
	b = append(b, "\"}\n\n"...)
	return &Frame{wire: b}
}

// Reasons carried by the revoked event.
const (
	RevokedUnauthorized = "unauthorized" // the auth API answered 401 to a re-check
	RevokedForbidden    = "forbidden"    // it answered 403
	RevokedUserChanged  = "user_changed" // it answered 200 for another user
	RevokedDisconnected = "disconnected" // the application ended the user's streams
)

// Revoked is the last frame of a stream whose user lost access: the client
// must not reconnect with the same credentials.
func Revoked(reason string) *Frame {
	return &Frame{wire: []byte("event: revoked\ndata: {\"reason\":\"" + reason + "\"}\n\n")}
}

// Retry is the retry field that tells EventSource how long to wait before
// reconnecting; a stream's first frame.
func Retry(d time.Duration) *Frame {
	b := append([]byte("retry: "), strconv.AppendInt(nil, d.Milliseconds(), 10)...)
	return &Frame{wire: append(b, "\n\n"...)}
}

// appendEvent appends data as one SSE event. Each line of data becomes its
// own data field; SSE treats CRLF, CR and LF alike as line ends, so the
// client's reassembled text equals data with every CRLF or CR turned into
// LF. id and name, when not empty, are written as the id and event fields;
// callers must only pass ids and names without CR or LF (stream entry ids
// are digits and a dash; message.EventName refuses control characters).
func appendEvent(dst []byte, id, name string, data []byte) []byte {
	if id != "" {
		dst = append(dst, "id: "...)
		dst = append(dst, id...)
		dst = append(dst, '\n')
	}
	if name != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, name...)
		dst = append(dst, '\n')
	}
	start := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '\n':
			dst = appendDataLine(dst, data[start:i])
			start = i + 1
		case '\r':
			dst = appendDataLine(dst, data[start:i])
			if i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			start = i + 1
		}
	}
	dst = appendDataLine(dst, data[start:])
	return append(dst, '\n')
}

func appendDataLine(dst, line []byte) []byte {
	dst = append(dst, "data: "...)
	dst = append(dst, line...)
	return append(dst, '\n')
}
