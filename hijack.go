package notify

import (
	"bytes"
	"errors"
	"maps"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/http/httpguts"
)

// HTTP/1.x streams are taken off the request goroutine once they are
// authenticated and registered: the connection is hijacked, and the stream
// then lives in two goroutines of its own, its write loop (stream.run) and
// hijackWriter.read, started by plain go statements so that their stacks
// hold a few frames instead of Caddy's whole middleware chain.
// ServeHTTP returns at once, which releases Caddy's request goroutine, the
// request objects Caddy keeps (clones, contexts, replacer) and net/http's
// per-connection buffers and background reader. An idle stream then costs
// its socket, the subscriber, this struct and two small stacks.
//
// Consequences:
//   - Caddy's access log records the request when it is hijacked, that is
//     when the stream starts, not when it ends: its duration is the time to
//     authenticate and its status and size are 0 (Caddy saw no WriteHeader
//     or body write: the head and body go straight to the connection).
//   - Response headers are taken from w.Header() as they are at that moment:
//     CORS headers and those of earlier `header` directives are sent, but
//     deferred header operations (`header >Name`, deletions, `defer`), which
//     Caddy applies when WriteHeader is called, are not, nor any response
//     rewriting by a wrapper such as `encode` (an event stream is not
//     compressed either way).
//   - http.Server.Shutdown does not track hijacked connections: each stream
//     ends itself when its config stops (stopCtx), so reloads and exits
//     never wait for it.
//
// HTTP/2 and HTTP/3 streams cannot be hijacked and keep the request
// goroutine (rcWriter in pump.go); so do HTTP/1 streams when Hijack is not
// supported by the response writer.

// hijackWriter is the frameWriter of an HTTP/1.x stream that outlived its
// request: it writes straight to the connection, each batch with one
// writev, and its read goroutine notices the client leaving.
type hijackWriter struct {
	conn   net.Conn
	head   []byte      // the response head, written with the first frames
	bufs   net.Buffers // reused between batches
	goneCh chan struct{}
	rbuf   [16]byte // read's buffer: SSE clients send nothing after the request
}

// hijack takes over the connection of an authenticated, registered stream.
// It returns nil, having written nothing, when the connection cannot be
// hijacked: the caller then streams through the ResponseWriter. The
// response head is taken from w's header now and written with the first
// frames.
func (h *Handler) hijack(w http.ResponseWriter) *hijackWriter {
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
			h.debug("hijacking connection", err)
		}
		return nil
	}
	// The server may have left read or write deadlines on the connection;
	// Hijack itself sets an expired read deadline to stop net/http's
	// background read.
	if err := conn.SetDeadline(time.Time{}); err != nil {
		h.debug("clearing deadlines", err)
	}
	return &hijackWriter{conn: conn, head: responseHead(w.Header()), goneCh: make(chan struct{})}
}

func (w *hijackWriter) writeFrames(frames []*event, timeout time.Duration) error {
	if w.head != nil {
		w.bufs = append(w.bufs, w.head)
		w.head = nil
	}
	size := 0
	for i, ev := range frames {
		w.bufs = append(w.bufs, ev.wire)
		size += len(ev.wire)
		if size >= writeChunk || i == len(frames)-1 {
			if err := w.flush(timeout); err != nil {
				return err
			}
			size = 0
		}
	}
	if len(w.bufs) > 0 { // the head alone
		return w.flush(timeout)
	}
	return nil
}

// flush writes bufs with one writev within timeout.
func (w *hijackWriter) flush(timeout time.Duration) error {
	if err := w.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	v := w.bufs // WriteTo consumes its receiver
	_, err := v.WriteTo(w.conn)
	clear(w.bufs)
	w.bufs = w.bufs[:0]
	if cap(w.bufs) > 64 {
		w.bufs = nil // a burst's array is not kept per stream
	}
	return err
}

func (w *hijackWriter) gone() <-chan struct{} { return w.goneCh }

// abort closes the connection, which fails a pending write and every
// later one.
func (w *hijackWriter) abort() { _ = w.conn.Close() }

// read waits for the client to close the connection (EOF or reset), or for
// close to close it, and then closes goneCh. Anything the client sends is
// discarded.
func (w *hijackWriter) read() {
	defer close(w.goneCh)
	for {
		if _, err := w.conn.Read(w.rbuf[:]); err != nil {
			return
		}
	}
}

// close closes the connection; read returns once it is closed.
func (w *hijackWriter) close() { _ = w.conn.Close() }

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

// headerExcluded lists the response headers that would contradict the
// framing of a hijacked stream, whose body ends when the connection closes.
var headerExcluded = map[string]bool{
	"Connection":        true,
	"Content-Length":    true,
	"Keep-Alive":        true,
	"Trailer":           true,
	"Transfer-Encoding": true,
	"Upgrade":           true,
}

// responseHead returns the head of a 200 response with hdr's fields (values
// with CR or LF have them replaced by spaces, as net/http does; fields with
// invalid names are left out), a Date when hdr has none, and
// Connection: close.
func responseHead(hdr http.Header) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	exclude := headerExcluded
	for k := range hdr {
		if !httpguts.ValidHeaderFieldName(k) {
			if len(exclude) == len(headerExcluded) {
				exclude = maps.Clone(headerExcluded)
			}
			exclude[k] = true
		}
	}
	_ = hdr.WriteSubset(&b, exclude)
	if _, ok := hdr["Date"]; !ok {
		b.WriteString("Date: ")
		b.Write(time.Now().UTC().AppendFormat(nil, http.TimeFormat))
		b.WriteString("\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.Bytes()
}
