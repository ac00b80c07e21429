// Package stream writes event streams to clients: a Stream drains its
// subscriber's queue (package index) to the client, over the
// ResponseWriter (HTTP/2, HTTP/3, or HTTP/1.1 without takeover) or straight
// to a taken-over HTTP/1.1 connection (takeover.go), and a Set holds the
// open streams of one handler: their write timeout, the watch on the
// connections it took over (watch.go), and their end.
package stream

import (
	"errors"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/sse"
)

// writer is where one stream's frames go: the ResponseWriter (rcWriter,
// writer.go) or a taken-over HTTP/1 connection (takeoverWriter,
// takeover.go).
type writer interface {
	// writeFrames writes frames in order and pushes them to the client,
	// giving up when a chunk of writeChunk bytes takes longer than timeout.
	writeFrames(frames []*sse.Frame, timeout time.Duration) error
	// abort makes a pending or later writeFrames fail at once; it may be
	// called from another goroutine.
	abort()
	// close releases the connection once the stream has ended; clean
	// reports whether its last write succeeded, so that the response can
	// end as a response does rather than be reset.
	close(clean bool)
}

// Stream is one open event stream: the subscriber's queue, drained to a
// writer by one loop (drain) that runs only while there is something to
// write: the subscriber wakes the stream, and Wake starts a goroutine that
// drains the queue and exits once it is empty. A writer blocked on a slow
// client holds only that client's goroutine, for at most write_timeout per
// chunk; only one writer runs at a time (the subscriber wakes the stream
// once per parking), so writes never overlap.
//
// What waits meanwhile differs:
//
//   - On a taken-over HTTP/1 connection, nothing: Serve returned, and the
//     Set's watch (watch.go) notices the client leaving. An idle stream
//     costs its structs and its socket.
//   - Otherwise (HTTP/2, HTTP/3, or no takeover) the request goroutine
//     must stay in the handler until the stream ends (serve), but it only
//     waits: writes, which go deep through Caddy's wrappers and the
//     HTTP/2 writer, run on the writers' own stacks, so the request
//     goroutine's stack stays as small as Caddy's chain allows.
type Stream struct {
	sub   *index.Subscriber
	ix    *index.Index // the index of its user's partition
	set   *Set
	out   writer
	tag   any           // the owner's, handed back to its OnEnd
	ended chan struct{} // serve's: closed by end; nil on a taken-over connection
	id    uint64        // its key in set
	clean bool          // the last write succeeded; the writer's
}

// Subscriber is the stream's queue.
func (st *Stream) Subscriber() *index.Subscriber { return st.sub }

// start writes first and then what waits; it ends the stream unless it
// parked.
func (st *Stream) start(first []*sse.Frame, firstWritten func()) {
	ok := st.write(first)
	if firstWritten != nil {
		firstWritten()
	}
	if !ok || !st.drain() {
		st.end()
	}
}

// Wake runs a writer for the stream; the subscriber calls it at most once
// per parking.
func (st *Stream) Wake() { go st.resume() }

// resume drains the queue of a stream whose writer was parked.
func (st *Stream) resume() {
	if !st.drain() {
		st.end()
	}
}

// serve runs a stream on the request goroutine, which waits until the
// stream ends: the writers end it when the subscriber is closed (its queue
// overflowed, or its hub is gone), a write fails or times out, or its last
// frame is written; the client leaving (gone) or the Set ending it ends it
// through leave. The ResponseWriter is used by one writer at a time and
// never after serve returns.
func (st *Stream) serve(first []*sse.Frame, firstWritten func(), gone <-chan struct{}) {
	go st.start(first, firstWritten)
	select {
	case <-st.ended:
	case <-gone:
		st.leave()
		<-st.ended
	}
}

// drain writes the queued frames, batch by batch, until the queue is empty
// and the writer parked (true: the stream goes on) or the stream must end
// (false: closed, a write failed, its last frame was written, or it was
// finished and everything is written).
func (st *Stream) drain() bool {
	var batch []*sse.Frame
	for {
		var last, open bool
		batch, last, open = st.sub.Take(batch)
		if !open {
			return false
		}
		if len(batch) == 0 {
			return !last
		}
		ok := st.write(batch)
		clear(batch) // let the frames go before the next batch
		if !ok || last {
			return false
		}
	}
}

// write sends frames within write_timeout and reports whether the stream
// can go on.
func (st *Stream) write(frames []*sse.Frame) bool {
	err := st.out.writeFrames(frames, time.Duration(st.set.writeTimeout.Load()))
	st.clean = err == nil
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
func (st *Stream) writeFailed(err error) {
	if errors.Is(err, errNotFlushable) {
		st.set.logger.Error("streaming is impossible here", zap.Error(err))
	} else if c := st.set.logger.Check(zapcore.DebugLevel, "stream write failed"); c != nil {
		c.Write(zap.Error(err))
	}
}

// end releases everything the stream holds. Its writer calls it, once: the
// subscriber is closed first, so nothing wakes the stream again.
func (st *Stream) end() {
	st.sub.Close()
	st.ix.Remove(st.sub)
	st.set.remove(st) // before the connection closes (watch.go)
	st.out.close(st.clean)
	st.set.m.StreamsOpen.Dec()
	if st.set.onEnd != nil {
		st.set.onEnd(st, st.tag)
	}
	if st.ended != nil {
		close(st.ended) // serve may return: the ResponseWriter is done with
	}
}

// finish ends the stream cleanly once what waits for it is written.
func (st *Stream) finish() { st.sub.Finish() }

// leave ends the stream from outside its writer: its client left, or its
// Set is stopping. A pending write fails at once, and the writer (woken if
// it was parked) ends the stream.
func (st *Stream) leave() {
	st.sub.Close()
	st.out.abort()
}
