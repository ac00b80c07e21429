package notify

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"syscall"
)

// connWatch holds the hijacked streams of one handler and ends them when
// their client leaves or their config stops, without a goroutine per
// stream: on Linux one goroutine per handler waits in epoll_wait on an
// epoll instance of its own (watch_linux.go), where each stream's socket is
// registered for the peer closing or resetting it. Where that is not
// available (another OS, or a connection that exposes no file descriptor),
// a stream gets a reader goroutine instead, as before: it reads until the
// client closes the connection.
//
// A config stop ends every stream it holds at once (stop), and a stream
// added after that is refused, so no stream outlives its config.
type connWatch struct {
	mu      sync.Mutex
	streams map[uint64]*stream
	last    uint64 // the last id given; ids are never reused
	stopped bool
	poll    *poller // started with the first stream, nil if unavailable
	noPoll  bool    // the poller could not be started: readers only
}

// add registers a hijacked stream and starts watching conn, the
// connection it writes to. It returns false, having done nothing, once the
// config is stopping: the caller ends the stream.
func (cw *connWatch) add(st *stream, conn net.Conn) bool {
	cw.mu.Lock()
	if cw.stopped {
		cw.mu.Unlock()
		return false
	}
	if cw.streams == nil {
		cw.streams = make(map[uint64]*stream)
	}
	cw.last++
	st.id = cw.last
	cw.streams[st.id] = st
	if cw.poll == nil && !cw.noPoll {
		var err error
		if cw.poll, err = newPoller(cw.gone); err != nil {
			cw.noPoll = true
		}
	}
	p := cw.poll
	cw.mu.Unlock()
	// The stream's writer starts after add returns, so the stream cannot
	// be removed (and its socket closed) while it is being watched.
	if p == nil || p.watch(st.id, conn) != nil {
		go cw.read(st.id, conn)
	}
	return true
}

// remove forgets a stream that ended; it must be called before its
// connection is closed, so that the socket leaves the epoll instance
// while its descriptor still names it.
func (cw *connWatch) remove(st *stream, conn net.Conn) {
	cw.mu.Lock()
	delete(cw.streams, st.id)
	p := cw.poll
	done := cw.stopped && len(cw.streams) == 0
	cw.mu.Unlock()
	if p == nil {
		return
	}
	p.unwatch(conn)
	if done {
		p.close()
	}
}

// gone ends the stream whose client left. A late report for a stream that
// already ended finds nothing: ids are never reused.
func (cw *connWatch) gone(id uint64) {
	cw.mu.Lock()
	st := cw.streams[id]
	cw.mu.Unlock()
	if st != nil {
		st.leave()
	}
}

// stop ends every stream, when the config stops: a write under way fails
// at once, and idle streams' writers are woken to end them. Streams added
// later are refused.
func (cw *connWatch) stop() {
	cw.mu.Lock()
	cw.stopped = true
	streams := make([]*stream, 0, len(cw.streams))
	for _, st := range cw.streams {
		streams = append(streams, st)
	}
	p := cw.poll
	cw.mu.Unlock()
	for _, st := range streams {
		st.leave()
	}
	if len(streams) == 0 && p != nil {
		p.close()
	}
}

// stopOn calls stop when ctx is done.
func (cw *connWatch) stopOn(ctx context.Context) {
	context.AfterFunc(ctx, cw.stop)
}

// read is the fallback watch: it reads from conn until the client closes
// it (or the stream's end closes it), discarding anything the client sends.
func (cw *connWatch) read(id uint64, conn net.Conn) {
	var buf [16]byte // SSE clients send nothing after the request
	for {
		if _, err := conn.Read(buf[:]); err != nil {
			cw.gone(id)
			return
		}
	}
}

// rawConn returns the socket beneath conn (a TLS connection's included),
// or nil when it has none.
func rawConn(conn net.Conn) syscall.RawConn {
	for {
		switch c := conn.(type) {
		case *tls.Conn:
			conn = c.NetConn()
			continue
		case syscall.Conn:
			rc, err := c.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		}
		return nil
	}
}
