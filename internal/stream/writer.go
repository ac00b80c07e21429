package stream

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-notify/notify/internal/sse"
)

// writeChunk is how many bytes write_timeout covers at a time: a large
// replay or burst gets a fresh deadline for each chunk, so a client that
// reads slowly but steadily is not cut off while one that stops is.
const writeChunk = 256 << 10

// errNotFlushable reports a ResponseWriter that cannot flush: frames would
// sit in a buffer instead of reaching the client.
var errNotFlushable = errors.New("the response cannot be flushed")

// errAborted is the error of a write after abort.
var errAborted = errors.New("stream aborted: its handler ended it")

// rcWriter writes a stream through its ResponseWriter: HTTP/2 and HTTP/3
// streams, and HTTP/1 ones whose connection is not taken over.
type rcWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	done    <-chan struct{}
	aborted atomic.Bool

	// mu keeps abort, which runs on its own goroutine, from touching the
	// ResponseWriter once the handler is done with it.
	mu     sync.Mutex
	closed bool
}

// newRCWriter sends the status line; headers and frames follow with the
// first writeFrames.
func newRCWriter(w http.ResponseWriter, r *http.Request) *rcWriter {
	rc := http.NewResponseController(w)
	// An expired read deadline would cancel the request on HTTP/1.1; a
	// stream reads nothing after its headers.
	_ = rc.SetReadDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	return &rcWriter{w: w, rc: rc, done: r.Context().Done()}
}

func (w *rcWriter) writeFrames(frames []*sse.Frame, timeout time.Duration) error {
	size := 0
	for i, f := range frames {
		if i == 0 || size >= writeChunk {
			if err := w.setDeadline(timeout); err != nil {
				return err
			}
			size = 0
		}
		if _, err := w.w.Write(f.Bytes()); err != nil {
			return err
		}
		size += f.Len()
	}
	if size >= writeChunk {
		if err := w.setDeadline(timeout); err != nil {
			return err
		}
	}
	if err := w.rc.Flush(); err != nil {
		if errors.Is(err, http.ErrNotSupported) {
			return errNotFlushable
		}
		return err
	}
	// Clear the deadline: HTTP/2 resets a stream whose write deadline
	// passes even when nothing is being written.
	if err := w.rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// setDeadline sets the write deadline timeout from now, unless the writer
// was aborted: checked after the deadline is set, since an abort that comes
// later sets its own deadline after this one.
func (w *rcWriter) setDeadline(timeout time.Duration) error {
	if err := w.rc.SetWriteDeadline(time.Now().Add(timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if w.aborted.Load() {
		return errAborted
	}
	return nil
}

// abort sets a write deadline in the past: HTTP/2 resets the stream at
// once, which ends a write waiting for flow control; HTTP/1 and HTTP/3
// writes fail with a timeout.
func (w *rcWriter) abort() {
	w.aborted.Store(true)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		// Straight to net/http's (or quic-go's) writer, whose deadline
		// methods are safe from another goroutine; Caddy's wrappers keep
		// state of their own that the stream's goroutine writes.
		_ = http.NewResponseController(innermostWriter(w.w)).SetWriteDeadline(time.Now())
	}
}

// close marks the writer done. After a clean last write the handler
// returns and the response ends as any does (the chunked body's end on
// HTTP/1.1, END_STREAM on HTTP/2 and HTTP/3): everything was flushed.
// Otherwise, unless the client has left, the response is reset with a
// write deadline in the past: an HTTP/2 stream whose client opens no window
// would stay open, holding the unsent rest of its response, after the
// handler returns.
func (w *rcWriter) close(clean bool) {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	if clean && !w.aborted.Load() {
		return
	}
	select {
	case <-w.done:
	default:
		_ = w.rc.SetWriteDeadline(time.Now())
	}
}

// innermostWriter follows Unwrap to the ResponseWriter of the server itself.
func innermostWriter(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}
