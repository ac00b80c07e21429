package stream

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/caddy-notify/notify/internal/sse"
)

// HTTP/1.x streams are taken off the request goroutine once they are
// authenticated and registered, unless the handler's takeover is off: the
// connection is hijacked, and ServeHTTP returns at once, which releases
// Caddy's request goroutine, the request objects Caddy keeps (clones,
// contexts, replacer) and net/http's per-connection buffers and background
// reader. The stream then runs no goroutine while it is idle: a writer
// goroutine, started by a plain go statement (a few frames, not Caddy's
// middleware chain), runs only while it has something to write
// (stream.go), and the Set's watch (watch.go) notices the client leaving.
// An idle stream costs its socket, the subscriber and the stream's small
// structs.
//
// Consequences:
//   - Caddy's access log records the request when it is taken over, that
//     is when the stream starts, not when it ends: its duration is the time
//     to authenticate and its status and size are 0 (Caddy saw no
//     WriteHeader or body write: the head and body go straight to the
//     connection).
//   - Response headers are taken from w.Header() as they are at that moment:
//     CORS headers and those of earlier `header` directives are sent, but
//     deferred header operations (`header >Name`, deletions, `defer`), which
//     Caddy applies when WriteHeader is called, are not, nor any response
//     rewriting by a wrapper such as `encode` (an event stream is not
//     compressed either way).
//   - http.Server.Shutdown does not track taken-over connections: the
//     streams' Set ends them, so reloads and exits never wait for them.
//
// HTTP/2 and HTTP/3 streams cannot be taken over and keep the request
// goroutine (rcWriter, writer.go); so do HTTP/1 streams when takeover is
// off or Hijack is not supported by the response writer.

// takeoverWriter is the writer of an HTTP/1.x stream that outlived its
// request: it writes straight to the connection, each batch with one
// writev on a plain TCP connection, or coalesced into as few writes (TLS
// records) as possible on any other (TLS). It holds no buffer between
// batches.
type takeoverWriter struct {
	conn net.Conn
	head []byte // the response head, written with the first frames
	// vectored: conn is a plain TCP connection, which writes net.Buffers
	// with one writev and, where the platform allows, can be written
	// without waiting (tryWrite); otherwise (TLS) a batch is copied into
	// records of up to recordSize bytes, since net.Buffers would fall back
	// to one Write, and so one TLS record, per frame.
	vectored bool
}

// takeOver hijacks the connection of an authenticated, registered stream.
// It returns nil, having written nothing, when the connection cannot be
// hijacked: the caller then streams through the ResponseWriter. The
// response head is taken from w's header now and written with the first
// frames. debug logs why a hijack that should have worked did not.
func takeOver(w http.ResponseWriter, debug func(msg string, err error)) *takeoverWriter {
	// Hijack net/http's own response writer, beneath Caddy's wrappers: the
	// access log's recorder would otherwise wrap the connection to count
	// written bytes, keeping the recorder (and the request behind it)
	// alive, racing with the access log reading that count once ServeHTTP
	// returns, and hiding the *net.TCPConn that net.Buffers needs for writev.
	// The bufio.ReadWriter is not used: its writer is empty, and bytes its
	// reader may hold beyond the request are irrelevant, since an SSE
	// client sends nothing more and the response closes the connection.
	conn, _, err := http.NewResponseController(innermostWriter(w)).Hijack()
	if err != nil {
		if !errors.Is(err, http.ErrNotSupported) {
			debug("hijacking connection", err)
		}
		return nil
	}
	// The server may have left read or write deadlines on the connection;
	// Hijack itself sets an expired read deadline to stop net/http's
	// background read.
	if err := conn.SetDeadline(time.Time{}); err != nil {
		debug("clearing deadlines", err)
	}
	_, vectored := conn.(*net.TCPConn)
	return &takeoverWriter{conn: conn, head: responseHead(w.Header()), vectored: vectored}
}

// recordSize is the most a coalesced write carries: one TLS record's
// worth of plaintext.
const recordSize = 16 << 10

// coalescePool holds the buffers of coalesced writes, lent for one batch.
var coalescePool = sync.Pool{New: func() any { return new([recordSize]byte) }}

func (w *takeoverWriter) writeFrames(frames []*sse.Frame, timeout time.Duration) error {
	head := w.head
	w.head = nil                         // written once, and not kept
	if head == nil && len(frames) == 1 { // the common case: one frame, nothing to gather
		return w.write(frames[0].Bytes(), timeout)
	}
	if !w.vectored || len(head)+batchSize(frames) <= recordSize {
		// A small batch is cheaper copied than gathered, and writev would
		// leave its iovec array on the connection for as long as it lives.
		return w.writeCoalesced(head, frames, timeout)
	}
	bufs := make(net.Buffers, 0, len(frames)+1)
	size := 0
	if head != nil {
		bufs, size = append(bufs, head), len(head)
	}
	for i, f := range frames {
		bufs = append(bufs, f.Bytes())
		size += f.Len()
		if size >= writeChunk || i == len(frames)-1 {
			if err := w.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
				return err
			}
			v := bufs // WriteTo consumes its receiver
			if _, err := v.WriteTo(w.conn); err != nil {
				return err
			}
			clear(bufs)
			bufs, size = bufs[:0], 0
		}
	}
	return w.conn.SetWriteDeadline(time.Time{}) // for the next write's first try
}

func batchSize(frames []*sse.Frame) int {
	n := 0
	for _, f := range frames {
		n += f.Len()
	}
	return n
}

// write writes b within timeout per writeChunk bytes. On a plain TCP
// connection it first tries without waiting and without a deadline
// (tryWrite, where the platform has it): when the client keeps up, the
// socket takes the whole write at once, and setting and clearing a
// deadline would cost two updates of the runtime's timer heap (under a
// lock every writer shares) per write. Only what the socket did not take
// is written under a deadline.
func (w *takeoverWriter) write(b []byte, timeout time.Duration) error {
	if w.vectored {
		n, err := tryWrite(w.conn.(*net.TCPConn), b)
		if err != nil || n == len(b) {
			return err
		}
		b = b[n:]
	}
	for len(b) > 0 {
		chunk := b[:min(len(b), writeChunk)]
		if err := w.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
			return err
		}
		if _, err := w.conn.Write(chunk); err != nil {
			return err
		}
		b = b[len(chunk):]
	}
	if w.vectored {
		// An expired deadline would fail the next try.
		return w.conn.SetWriteDeadline(time.Time{})
	}
	return nil
}

// writeCoalesced copies head and frames into writes of up to recordSize
// bytes (a piece as large or larger is written alone, without a copy).
func (w *takeoverWriter) writeCoalesced(head []byte, frames []*sse.Frame, timeout time.Duration) error {
	rec := coalescePool.Get().(*[recordSize]byte)
	defer coalescePool.Put(rec)
	buf := rec[:0]
	add := func(b []byte) error {
		if len(buf) > 0 && len(buf)+len(b) > recordSize {
			if err := w.write(buf, timeout); err != nil {
				return err
			}
			buf = buf[:0]
		}
		if len(b) >= recordSize {
			return w.write(b, timeout)
		}
		buf = append(buf, b...)
		return nil
	}
	if head != nil {
		if err := add(head); err != nil {
			return err
		}
	}
	for _, f := range frames {
		if err := add(f.Bytes()); err != nil {
			return err
		}
	}
	if len(buf) > 0 {
		return w.write(buf, timeout)
	}
	return nil
}

// abort closes the connection, which fails a pending write and every
// later one.
func (w *takeoverWriter) abort() { _ = w.conn.Close() }

// close closes the connection: the response's body ends there (its head
// says Connection: close and has no length).
func (w *takeoverWriter) close(bool) { _ = w.conn.Close() }
