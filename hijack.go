package notify

import (
	"bytes"
	"errors"
	"maps"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"
)

// HTTP/1.x streams are taken off the request goroutine once they are
// authenticated and registered: the connection is hijacked, the response
// head is written here, and the stream then lives in a hijackedStream with
// two goroutines of its own, started by plain go statements so that their
// stacks hold a few frames instead of Caddy's whole middleware chain.
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
// goroutine (stream in handler.go); so do HTTP/1 streams when Hijack is not
// supported by the response writer.

// hijackedStream is one HTTP/1.x event stream that outlived its request.
type hijackedStream struct {
	h    *Handler
	conn net.Conn
	sub  *subscriber
	gone chan struct{} // closed by read when the client has gone away
	rbuf [16]byte      // read's buffer: SSE clients send nothing after the request
}

// hijack takes over the connection of an authenticated, registered stream
// and writes the response head, the retry field and resumed's events. It
// reports false, having written nothing, when the connection cannot be
// hijacked: the caller then streams through the ResponseWriter. When it
// reports true, the stream is handled: sub is removed from the index and
// streams_open decremented when it ends.
func (h *Handler) hijack(w http.ResponseWriter, sub *subscriber, resumed resumeResult) bool {
	// Hijack net/http's own response writer, beneath Caddy's wrappers: the
	// access log's recorder would otherwise wrap the connection to count
	// written bytes, keeping the recorder (and the request behind it)
	// alive, racing with the access log reading that count once ServeHTTP
	// returns, and hiding the *net.TCPConn that net.Buffers needs for writev.
	conn, brw, err := http.NewResponseController(innermostWriter(w)).Hijack()
	if err != nil {
		if !errors.Is(err, http.ErrNotSupported) {
			h.debug("hijacking connection", err)
		}
		return false
	}
	// brw is dropped: its writer is empty, and bytes its reader may hold
	// beyond the request are irrelevant, since an SSE client sends nothing
	// more and the response closes the connection.
	_ = brw
	metrics.streamsOpen.Inc()
	s := &hijackedStream{h: h, conn: conn, sub: sub, gone: make(chan struct{})}

	// The server may have left read or write deadlines on the connection;
	// Hijack itself sets an expired read deadline to stop net/http's
	// background read.
	if err := conn.SetDeadline(time.Time{}); err != nil {
		h.debug("clearing deadlines", err)
		s.end()
		return true
	}
	frames := resumed.frames()
	bufs := make(net.Buffers, 0, 1+len(frames))
	bufs = append(bufs, appendRetry(responseHead(w.Header()), time.Duration(h.Retry)))
	for _, ev := range frames {
		bufs = append(bufs, ev.wire)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(time.Duration(h.WriteTimeout)))
	if _, err := bufs.WriteTo(conn); err != nil {
		h.debug("writing response head", err)
		s.end()
		return true
	}
	_ = conn.SetWriteDeadline(time.Time{})

	go s.write()
	go s.read()
	return true
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

// write is the stream's writer: it sends each batch of queued events with
// one writev, until the client goes, the subscriber is closed (its queue
// overflowed, or the hub is gone), a write fails or times out, or the
// config stops.
func (s *hijackedStream) write() {
	defer s.end()
	stop := s.h.stopCtx.Done()
	writeTimeout := time.Duration(s.h.WriteTimeout)
	var batch []*event
	var bufs net.Buffers
	for {
		select {
		case <-s.gone:
			return
		case <-stop:
			return
		case _, ok := <-s.sub.wake:
			if !ok {
				return // closed by the hub: the client reconnects
			}
			batch = s.sub.take(batch)
			for i, ev := range batch {
				bufs = append(bufs, ev.wire)
				batch[i] = nil // let the event go before the next batch
			}
			if err := s.conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
				s.h.debug("setting write deadline", err)
				return
			}
			v := bufs // WriteTo consumes its receiver
			_, err := v.WriteTo(s.conn)
			clear(bufs)
			bufs = bufs[:0]
			if err != nil {
				s.h.debug("writing events", err)
				return
			}
			_ = s.conn.SetWriteDeadline(time.Time{})
			if cap(bufs) > 64 {
				batch, bufs = nil, nil // a burst's arrays are not kept per stream
			}
		}
	}
}

// read waits for the client to close the connection (EOF or reset), or for
// end to close it, and then closes gone. Anything the client sends is
// discarded.
func (s *hijackedStream) read() {
	defer close(s.gone)
	for {
		if _, err := s.conn.Read(s.rbuf[:]); err != nil {
			return
		}
	}
}

// end releases the stream; read returns once the connection is closed.
func (s *hijackedStream) end() {
	s.h.index.remove(s.sub)
	if err := s.conn.Close(); err != nil {
		s.h.logger.Debug("closing stream connection", zap.Error(err))
	}
	metrics.streamsOpen.Dec()
}
