package notify

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// frameWriter is where one stream's frames go: the ResponseWriter
// (rcWriter, below) or a hijacked HTTP/1 connection (hijackWriter,
// hijack.go).
type frameWriter interface {
	// writeFrames writes frames in order and pushes them to the client,
	// giving up when a chunk of writeChunk bytes takes longer than timeout.
	writeFrames(frames []*event, timeout time.Duration) error
	// gone is closed when the client has left.
	gone() <-chan struct{}
	// abort makes a pending or later writeFrames fail at once; it may be
	// called from another goroutine.
	abort()
	// close releases the connection once the stream has ended.
	close()
}

// stream is one open event stream: the subscriber's queue, drained to a
// frameWriter by one loop.
type stream struct {
	sub          *subscriber
	ix           *index
	out          frameWriter
	stop         context.Context // done when the config starts stopping
	writeTimeout time.Duration
	logger       *zap.Logger
	firstWritten func() // called once the first frames are written or failed
	released     func() // called when the stream has ended, or nil
}

// run writes first, then each batch of queued events, until the client
// leaves, the subscriber is closed (its queue overflowed, or the hub is
// gone), a write fails or times out, or the config stops; then it releases
// the stream.
func (s *stream) run(first []*event) {
	defer s.end()
	// A write blocked on a client that does not read (or an HTTP/2 client
	// that opens no flow-control window) must not hold up a config stop:
	// it is aborted. AfterFunc costs no goroutine until the stop.
	defer context.AfterFunc(s.stop, s.out.abort)()
	ok := s.write(first)
	// A replay can be megabytes: it must not stay reachable from this
	// frame for as long as the stream lives.
	clear(first)
	if s.firstWritten != nil {
		s.firstWritten()
		s.firstWritten = nil
	}
	if !ok {
		return
	}
	var batch []*event
	for {
		select {
		case <-s.out.gone():
			return
		case <-s.stop.Done():
			return
		case _, ok := <-s.sub.wake:
			if !ok {
				return // closed by the hub: the client reconnects
			}
			var last bool
			batch, last = s.sub.take(batch)
			ok = s.write(batch)
			clear(batch) // let the events go before the next batch
			if !ok || last {
				return
			}
			s.sub.written()
		}
	}
}

// write sends frames within write_timeout and reports whether the stream
// can go on.
func (s *stream) write(frames []*event) bool {
	err := s.out.writeFrames(frames, s.writeTimeout)
	if err == nil {
		return true
	}
	if errors.Is(err, errNotFlushable) {
		s.logger.Error("streaming is impossible here", zap.Error(err))
	} else if c := s.logger.Check(zapcore.DebugLevel, "stream write failed"); c != nil {
		c.Write(zap.Error(err))
	}
	return false
}

func (s *stream) end() {
	s.ix.remove(s.sub)
	s.out.close()
	metrics.streamsOpen.Dec()
	if s.released != nil {
		s.released()
	}
}

// writeChunk is how many bytes write_timeout covers at a time: a large
// replay or burst gets a fresh deadline for each chunk, so a client that
// reads slowly but steadily is not cut off while one that stops is.
const writeChunk = 256 << 10

// errNotFlushable reports a ResponseWriter that cannot flush: events would
// sit in a buffer instead of reaching the client.
var errNotFlushable = errors.New("the response cannot be flushed")

// rcWriter writes a stream through its ResponseWriter: HTTP/2 and HTTP/3
// streams, and HTTP/1 ones whose connection cannot be hijacked.
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

func (w *rcWriter) writeFrames(frames []*event, timeout time.Duration) error {
	size := 0
	for i, ev := range frames {
		if i == 0 || size >= writeChunk {
			if err := w.setDeadline(timeout); err != nil {
				return err
			}
			size = 0
		}
		if _, err := w.w.Write(ev.wire); err != nil {
			return err
		}
		size += len(ev.wire)
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

func (w *rcWriter) gone() <-chan struct{} { return w.done }

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

// errAborted is the error of a write after abort.
var errAborted = errors.New("stream aborted: the config is stopping")

// close marks the writer done. Unless the client has left, the response is
// reset with a write deadline in the past: an HTTP/2 stream whose client
// opens no window would otherwise stay open, holding the unsent rest of its
// response, after the handler returns.
func (w *rcWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case <-w.done:
	default:
		_ = w.rc.SetWriteDeadline(time.Now())
	}
}
