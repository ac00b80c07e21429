package notify

import (
	"bytes"
	"strconv"
	"time"
	"unsafe"
)

// Every SSE frame the handler writes is built here.

// event is one pre-framed chunk of the SSE wire format. The same event value
// is queued to every stream that receives it, so a message is framed once no
// matter how many streams it reaches; it must never be modified once queued.
type event struct {
	id   entryID // Redis Stream entry ID in stream mode; zero for pub/sub
	wire []byte
}

// pingEvent is the heartbeat: an SSE comment, which clients ignore but which
// keeps proxies and NATs from closing an idle connection.
var pingEvent = &event{wire: []byte(": ping\n\n")}

// messageEvent frames a pub/sub message: data fields only.
func messageEvent(payload []byte) *event {
	return &event{wire: appendEvent(make([]byte, 0, frameSize("", payload)), "", payload)}
}

// entryEvent frames the message of a Redis Stream entry, with the entry ID as
// the SSE id so that the client can resume after it.
func entryEvent(id entryID, payload []byte) *event {
	sid := id.String()
	return &event{id: id, wire: appendEvent(make([]byte, 0, frameSize(sid, payload)), sid, payload)}
}

// frameSize is at least the length of appendEvent's output, so that a frame
// is allocated once at its size instead of growing by doubling: for a large
// message that would cost several times its size.
func frameSize(id string, data []byte) int {
	lines := 1 + bytes.Count(data, []byte{'\n'}) + bytes.Count(data, []byte{'\r'})
	return len("id: \n") + len(id) + len(data) + lines*len("data: \n") + 1
}

// positionEvent is an id field alone: EventSource records it as its last
// event ID without dispatching anything. A new stream-mode stream starts
// with one, so that a client reconnecting before its first event resumes
// from where it started.
func positionEvent(id entryID) *event {
	b := append([]byte("id: "), id.String()...)
	return &event{id: id, wire: append(b, "\n\n"...)}
}

// Reasons carried by the reset event.
const (
	resetTruncated  = "history_truncated"     // entries after Last-Event-ID were trimmed
	resetUnknownID  = "unknown_last_event_id" // Last-Event-ID is newer than the stream
	resetReplayOver = "replay_limit"          // more events than replay_limit were missed
)

// resetEvent tells a client that its history was cut and it should refetch
// its state. id, when not nil, is where the stream continues, so that a
// reconnect right after it does not repeat the reset.
func resetEvent(reason string, id *entryID) *event {
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

// Reasons carried by the revoked event.
const (
	revokedUnauthorized = "unauthorized" // the auth API answered 401 to a re-check
	revokedForbidden    = "forbidden"    // it answered 403
	revokedUserChanged  = "user_changed" // it answered 200 for another user
	revokedDisconnected = "disconnected" // the application ended the user's streams
)

// revokedEvent is the last frame of a stream whose user lost access: the
// client must not reconnect with the same credentials.
func revokedEvent(reason string) *event {
	return &event{wire: []byte("event: revoked\ndata: {\"reason\":\"" + reason + "\"}\n\n")}
}

// retryEvent is the retry field that tells EventSource how long to wait
// before reconnecting; a stream's first frame.
func retryEvent(d time.Duration) *event {
	return &event{wire: appendRetry(nil, d)}
}

// appendRetry appends the retry field.
func appendRetry(dst []byte, d time.Duration) []byte {
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, d.Milliseconds(), 10)
	return append(dst, "\n\n"...)
}

// appendEvent appends data as one SSE event. Each line of data becomes its own
// data field; SSE treats CRLF, CR and LF alike as line ends, so the client's
// reassembled text equals data with every CRLF or CR turned into LF. id, when
// not empty, is written as the id field; callers must only pass ids without
// CR or LF (stream entry ids are digits and a dash).
func appendEvent(dst []byte, id string, data []byte) []byte {
	if id != "" {
		dst = append(dst, "id: "...)
		dst = append(dst, id...)
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

// stringBytes returns the bytes of s without copying them, for a message
// that is only read: go-redis hands messages over as strings, and copying a
// large one would double what it costs while it is delivered.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
