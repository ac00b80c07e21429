package notify

import (
	"strconv"
	"time"
)

// event is one pre-framed chunk of the SSE wire format. The same event value
// is queued to every stream that receives it, so a message is framed once no
// matter how many streams it reaches; it must never be modified once queued.
type event struct {
	id   streamID // stream entry ID in stream mode; zero for pub/sub
	wire []byte
}

// pingEvent is the heartbeat: an SSE comment, which clients ignore but which
// keeps proxies and NATs from closing an idle connection.
var pingEvent = &event{wire: []byte(": ping\n\n")}

// appendRetry appends the retry field that tells EventSource how long to wait
// before reconnecting.
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
