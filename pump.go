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
	// abort makes a pending or later writeFrames fail at once; it may be
	// called from another goroutine.
	abort()
	// close releases the connection once the stream has ended.
	close()
}

// stream is one open event stream: the subscriber's queue, drained to a
// frameWriter by one loop (drain) that runs only while there is something
// to write: the subscriber wakes the stream, and wake starts a goroutine
// that drains the queue and exits once it is empty. A writer blocked on a
// slow client holds only that client's goroutine, for at most
// write_timeout per chunk; only one writer runs at a time (the subscriber
// wakes the stream once per parking), so writes never overlap.
//
// What waits meanwhile differs:
//
//   - On a hijacked HTTP/1 connection, nothing: serveStream returned, and
//     the handler's connWatch (watch.go) notices the client leaving and
//     the config stopping. An idle stream costs its structs and its socket.
//   - Otherwise (HTTP/2, HTTP/3, or no Hijack) the request goroutine must
//     stay in the handler until the stream ends (serve), but it only
//     waits: writes, which go deep through Caddy's wrappers and the
//     HTTP/2 writer, run on the writers' own stacks, so the request
//     goroutine's stack stays as small as Caddy's chain allows.
type stream struct {
	sub   *subscriber
	h     *Handler
	ix    *index // the index of its user's partition
	out   frameWriter
	cred  *credGroup    // its place in reauth, or nil
	ended chan struct{} // serve's: closed by end; nil on a hijacked connection
	id    uint64        // its key in h.conns once hijacked, or 0
}

// start writes first and then what waits; it ends the stream unless it
// parked.
func (st *stream) start(first []*event, firstWritten func()) {
	ok := st.write(first)
	if firstWritten != nil {
		firstWritten()
	}
	if !ok || !st.drain() {
		st.end()
	}
}

// wake runs a writer for the stream; the subscriber calls it at most once
// per parking.
func (st *stream) wake() { go st.resume() }

// resume drains the queue of a stream whose writer was parked.
func (st *stream) resume() {
	if !st.drain() {
		st.end()
	}
}

// serve runs a stream on the request goroutine, which waits until the
// stream ends: the writers end it when the subscriber is closed (its queue
// overflowed, or the hub is gone), a write fails or times out, or its last
// frame is written; the client leaving (gone) or the config stopping ends
// it through leave. The ResponseWriter is used by one writer at a time and
// never after serve returns.
func (st *stream) serve(first []*event, firstWritten func(), gone <-chan struct{}) {
	st.ended = make(chan struct{})
	// A write blocked on a client that does not read (or an HTTP/2 client
	// that opens no flow-control window) must not hold up a config stop:
	// leave aborts it. AfterFunc costs no goroutine until the stop.
	defer context.AfterFunc(st.h.stopCtx, st.leave)()
	go st.start(first, firstWritten)
	select {
	case <-st.ended:
	case <-gone:
		st.leave()
		<-st.ended
	}
}

// drain writes the queued events, batch by batch, until the queue is empty
// and the writer parked (true: the stream goes on) or the stream must end
// (false: closed, a write failed, or its last frame was written).
func (st *stream) drain() bool {
	var batch []*event
	for {
		var last, open bool
		batch, last, open = st.sub.take(batch)
		if !open {
			return false
		}
		if len(batch) == 0 {
			return true
		}
		ok := st.write(batch)
		clear(batch) // let the events go before the next batch
		if !ok || last {
			return false
		}
	}
}

// write sends frames within write_timeout and reports whether the stream
// can go on.
func (st *stream) write(frames []*event) bool {
	err := st.out.writeFrames(frames, time.Duration(st.h.WriteTimeout))
	if err == nil {
		return true
	}
	st.writeFailed(err)
	return false
}

// writeFailed logs a failed write. Apart from write, whose frame then stays
// small: a writer starts on a new goroutine's smallest stack, and each
// growth copies it.
//
//go:noinline
func (st *stream) writeFailed(err error) {
	if errors.Is(err, errNotFlushable) {
		st.h.logger.Error("streaming is impossible here", zap.Error(err))
	} else if c := st.h.logger.Check(zapcore.DebugLevel, "stream write failed"); c != nil {
		c.Write(zap.Error(err))
	}
}

// end releases everything the stream holds. Its writer calls it, once: the
// subscriber is closed first, so nothing wakes the stream again.
func (st *stream) end() {
	st.sub.close()
	st.ix.remove(st.sub)
	if hw, ok := st.out.(*hijackWriter); ok && st.id != 0 {
		st.h.conns.remove(st, hw.conn) // before the connection closes (watch.go)
	}
	st.out.close()
	metrics.streamsOpen.Dec()
	st.h.release(st.sub.user, st)
	if st.ended != nil {
		close(st.ended) // serve may return: the ResponseWriter is done with
	}
}

// leave ends the stream from outside its writer: its client left, or its
// config is stopping. A pending write fails at once, and the writer (woken
// if it was parked) ends the stream.
func (st *stream) leave() {
	st.sub.close()
	st.out.abort()
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
