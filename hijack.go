package notify

import (
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// HTTP/1.x streams are taken off the request goroutine once they are
// authenticated and registered: the connection is hijacked, and ServeHTTP
// returns at once, which releases Caddy's request goroutine, the request
// objects Caddy keeps (clones, contexts, replacer) and net/http's
// per-connection buffers and background reader. The stream then runs no
// goroutine while it is idle: a writer goroutine, started by a plain go
// statement (a few frames, not Caddy's middleware chain), runs only while
// it has something to write (pump.go), and the handler's connWatch
// (watch.go) notices the client leaving. An idle stream costs its socket,
// the subscriber and the stream's small structs.
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
// writev on a plain TCP connection, or coalesced into as few writes (TLS
// records) as possible on any other (TLS). It holds no buffer between
// batches; the handler's connWatch notices the client leaving.
type hijackWriter struct {
	conn net.Conn
	head []byte // the response head, written with the first frames
	// vectored: conn is a plain TCP connection, which writes net.Buffers
	// with one writev and can be written without waiting (tryWrite);
	// otherwise (TLS) a batch is copied into records of up to recordSize
	// bytes, since net.Buffers would fall back to one Write, and so one
	// TLS record, per frame.
	vectored bool
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
	_, vectored := conn.(*net.TCPConn)
	return &hijackWriter{conn: conn, head: responseHead(w.Header()), vectored: vectored}
}

// recordSize is the most a coalesced write carries: one TLS record's
// worth of plaintext.
const recordSize = 16 << 10

// coalescePool holds the buffers of coalesced writes, lent for one batch.
var coalescePool = sync.Pool{New: func() any { return new([recordSize]byte) }}

func (w *hijackWriter) writeFrames(frames []*event, timeout time.Duration) error {
	if w.head != nil {
		head := &event{wire: w.head}
		w.head = nil // written once, and not kept
		frames = append([]*event{head}, frames...)
	}
	if len(frames) == 1 { // the common case: one event, nothing to gather
		return w.write(frames[0].wire, timeout)
	}
	if !w.vectored || batchSize(frames) <= recordSize {
		// A small batch is cheaper copied than gathered, and writev would
		// leave its iovec array on the connection for as long as it lives.
		return w.writeCoalesced(frames, timeout)
	}
	bufs := make(net.Buffers, 0, len(frames))
	size := 0
	for i, ev := range frames {
		bufs = append(bufs, ev.wire)
		size += len(ev.wire)
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

func batchSize(frames []*event) int {
	n := 0
	for _, ev := range frames {
		n += len(ev.wire)
	}
	return n
}

// write writes b within timeout per writeChunk bytes. On a plain TCP
// connection it first tries without waiting and without a deadline: when
// the client keeps up, the socket takes the whole write at once, and
// setting and clearing a deadline would cost two updates of the runtime's
// timer heap (under a lock every writer shares) per write. Only what the
// socket did not take is written under a deadline.
func (w *hijackWriter) write(b []byte, timeout time.Duration) error {
	if w.vectored {
		n, err := w.tryWrite(b)
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

// tryWrite writes what the socket takes of b without waiting; 0 when it
// is full.
func (w *hijackWriter) tryWrite(b []byte) (int, error) {
	rc, err := w.conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var errno error
	// The descriptor is held open (and locked for writing) while f runs.
	err = rc.Write(func(fd uintptr) bool {
		n, errno = syscall.Write(int(fd), b)
		return true // never wait here
	})
	switch {
	case err != nil: // closed (abort)
		return 0, err
	case errno == syscall.EAGAIN || errno == syscall.EINTR:
		return 0, nil
	case errno != nil:
		return 0, errno
	}
	return n, nil
}

// writeCoalesced copies frames into writes of up to recordSize bytes (a
// frame as large or larger is written alone, without a copy).
func (w *hijackWriter) writeCoalesced(frames []*event, timeout time.Duration) error {
	rec := coalescePool.Get().(*[recordSize]byte)
	defer coalescePool.Put(rec)
	buf := rec[:0]
	for _, ev := range frames {
		if len(buf) > 0 && len(buf)+len(ev.wire) > recordSize {
			if err := w.write(buf, timeout); err != nil {
				return err
			}
			buf = buf[:0]
		}
		if len(ev.wire) >= recordSize {
			if err := w.write(ev.wire, timeout); err != nil {
				return err
			}
			continue
		}
		buf = append(buf, ev.wire...)
	}
	if len(buf) > 0 {
		return w.write(buf, timeout)
	}
	return nil
}

// abort closes the connection, which fails a pending write and every
// later one.
func (w *hijackWriter) abort() { _ = w.conn.Close() }

// close closes the connection.
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

// responseHead returns the head of a 200 response with hdr's fields in
// sorted order (values trimmed, with CR and LF replaced by spaces, as
// net/http writes them; fields with invalid names are left out), a Date
// when hdr has none, and Connection: close. It is built directly rather
// than with http.Header.WriteSubset, which costs a strings.Replacer pass
// per value: every stream's connect writes one.
func responseHead(hdr http.Header) []byte {
	var keyBuf [16]string
	keys := keyBuf[:0]
	size := len("HTTP/1.1 200 OK\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nConnection: close\r\n\r\n")
	for k, vv := range hdr {
		if headerExcluded[k] || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		keys = append(keys, k)
		for _, v := range vv {
			size += len(k) + len(": \r\n") + len(v)
		}
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	b = append(b, "HTTP/1.1 200 OK\r\n"...)
	for _, k := range keys {
		for _, v := range hdr[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			for _, c := range []byte(textproto.TrimString(v)) {
				if c == '\r' || c == '\n' {
					c = ' '
				}
				b = append(b, c)
			}
			b = append(b, "\r\n"...)
		}
	}
	if _, ok := hdr["Date"]; !ok {
		b = append(b, "Date: "...)
		b = appendHTTPDate(b, time.Now())
		b = append(b, "\r\n"...)
	}
	return append(b, "Connection: close\r\n\r\n"...)
}

// appendHTTPDate appends t in http.TimeFormat, without the general
// formatter (as net/http does for its own Date headers).
func appendHTTPDate(b []byte, t time.Time) []byte {
	const days = "SunMonTueWedThuFriSat"
	const months = "JanFebMarAprMayJunJulAugSepOctNovDec"
	t = t.UTC()
	yy, mm, dd := t.Date()
	hh, mn, ss := t.Clock()
	day, mon := days[3*t.Weekday():], months[3*(mm-1):]
	return append(b,
		day[0], day[1], day[2], ',', ' ',
		byte('0'+dd/10), byte('0'+dd%10), ' ',
		mon[0], mon[1], mon[2], ' ',
		byte('0'+yy/1000), byte('0'+(yy/100)%10), byte('0'+(yy/10)%10), byte('0'+yy%10), ' ',
		byte('0'+hh/10), byte('0'+hh%10), ':',
		byte('0'+mn/10), byte('0'+mn%10), ':',
		byte('0'+ss/10), byte('0'+ss%10), ' ',
		'G', 'M', 'T')
}
