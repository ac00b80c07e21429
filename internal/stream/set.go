package stream

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/sse"
)

// Options configure a Set.
type Options struct {
	Logger  *zap.Logger
	Metrics *metrics.Set
	// WriteTimeout bounds each write (each chunk of writeChunk bytes).
	WriteTimeout time.Duration
	// Takeover takes HTTP/1.x streams off the request goroutine (see
	// takeover.go).
	Takeover bool
	// OnEnd, when set, is called once per stream when it has ended, with
	// the tag it was created with: the owner gives back what the stream
	// held.
	OnEnd func(st *Stream, tag any)
}

// Set is the open streams of one handler. It runs their writers with the
// handler's write timeout, watches the connections it took over for their
// client leaving, without a goroutine per stream (watch.go), and ends them
// all when the handler stops.
type Set struct {
	logger       *zap.Logger
	m            *metrics.Set
	onEnd        func(*Stream, any)
	writeTimeout atomic.Int64
	takeover     atomic.Bool

	mu      sync.Mutex
	streams map[uint64]*Stream
	last    uint64 // the last id given; ids are never reused
	stopped bool
	emptied chan struct{} // closed once stopped and without streams
	poll    *poller       // started with the first taken-over stream, nil if unavailable
	noPoll  bool          // the poller could not be started: readers only
}

// NewSet returns an empty set.
func NewSet(opts Options) *Set {
	s := &Set{logger: opts.Logger, m: opts.Metrics, onEnd: opts.OnEnd, streams: make(map[uint64]*Stream),
		emptied: make(chan struct{})}
	s.SetWriteTimeout(opts.WriteTimeout)
	s.SetTakeover(opts.Takeover)
	return s
}

// SetWriteTimeout bounds the writes of every stream of the set from now on.
func (s *Set) SetWriteTimeout(d time.Duration) { s.writeTimeout.Store(int64(d)) }

// SetTakeover says whether HTTP/1.x streams served from now on are taken
// over.
func (s *Set) SetTakeover(on bool) { s.takeover.Store(on) }

// NewStream prepares the stream of sub, whose user's messages come through
// ix; it becomes sub's waker, so it must be created before sub is
// registered with its hub. tag is handed back to OnEnd.
func (s *Set) NewStream(sub *index.Subscriber, ix *index.Index, tag any) *Stream {
	st := &Stream{sub: sub, ix: ix, set: s, tag: tag}
	sub.SetWaker(st)
	return st
}

// Serve answers an authenticated request, whose subscriber is registered,
// with its stream: first (the retry field and the stream's preamble), then
// its live events. firstWritten, if not nil, is called once first is
// written, or failed to be. Over HTTP/1.x with takeover on, the connection
// is taken over and Serve returns at once; otherwise it returns when the
// stream ends.
func (s *Set) Serve(st *Stream, w http.ResponseWriter, r *http.Request, first []*sse.Frame, firstWritten func()) {
	s.m.StreamsOpen.Inc()
	if r.ProtoMajor == 1 && s.takeover.Load() {
		if tw := takeOver(w, s.debug); tw != nil {
			st.out = tw
			if !s.add(st, tw.conn) { // stopping
				if firstWritten != nil {
					firstWritten()
				}
				st.end()
				return
			}
			go st.start(first, firstWritten)
			return
		}
	}
	st.out = newRCWriter(w, r)
	st.ended = make(chan struct{})
	if !s.add(st, nil) {
		if firstWritten != nil {
			firstWritten()
		}
		st.end()
		return
	}
	st.serve(first, firstWritten, r.Context().Done())
}

// add registers a stream and, for a taken-over one, starts watching conn,
// the connection it writes to. It returns false, having done nothing, once
// the set is stopping: the caller ends the stream.
func (s *Set) add(st *Stream, conn net.Conn) bool {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return false
	}
	s.last++
	st.id = s.last
	s.streams[st.id] = st
	if conn == nil {
		s.mu.Unlock()
		return true
	}
	if s.poll == nil && !s.noPoll {
		var err error
		if s.poll, err = newPoller(s.gone); err != nil {
			s.noPoll = true
		}
	}
	p := s.poll
	s.mu.Unlock()
	// The stream's writer starts after add returns, so the stream cannot
	// be removed (and its socket closed) while it is being watched.
	if p == nil || p.watch(st.id, conn) != nil {
		go s.read(st.id, conn)
	}
	return true
}

// remove forgets a stream that ended; for a taken-over one it must be
// called before its connection is closed, so that the socket leaves the
// epoll instance while its descriptor still names it.
func (s *Set) remove(st *Stream) {
	if st.id == 0 {
		return // never added
	}
	s.mu.Lock()
	delete(s.streams, st.id)
	p := s.poll
	done := s.stopped && len(s.streams) == 0
	if done {
		s.closeEmptiedLocked()
	}
	s.mu.Unlock()
	if p == nil {
		return
	}
	if tw, ok := st.out.(*takeoverWriter); ok {
		p.unwatch(tw.conn)
	}
	if done {
		p.close()
	}
}

// gone ends the stream whose client left. A late report for a stream that
// already ended finds nothing: ids are never reused.
func (s *Set) gone(id uint64) {
	s.mu.Lock()
	st := s.streams[id]
	s.mu.Unlock()
	if st != nil {
		st.leave()
	}
}

// Stop ends every stream at once: a write under way fails, and idle
// streams' writers are woken to end them. Streams served later are refused.
func (s *Set) Stop() {
	for _, st := range s.Close() {
		st.leave()
	}
}

// Close refuses the streams served from now on, and returns those open,
// for the caller to end (Finish, or Stop).
func (s *Set) Close() []*Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	streams := make([]*Stream, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	if len(streams) == 0 {
		s.closeEmptiedLocked()
		if s.poll != nil {
			s.poll.close()
		}
	}
	return streams
}

// Finish ends st cleanly once what waits for it is written: the end of its
// response as any response ends, never a reset.
func (s *Set) Finish(st *Stream) { st.finish() }

// Emptied is closed once the set is closed (Close, Stop) and its last
// stream has ended.
func (s *Set) Emptied() <-chan struct{} { return s.emptied }

// Len is how many streams are open.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

func (s *Set) closeEmptiedLocked() {
	select {
	case <-s.emptied:
	default:
		close(s.emptied)
	}
}

// read is the fallback watch: it reads from conn until the client closes
// it (or the stream's end closes it), discarding anything the client sends.
func (s *Set) read(id uint64, conn net.Conn) {
	var buf [16]byte // SSE clients send nothing after the request
	for {
		if _, err := conn.Read(buf[:]); err != nil {
			s.gone(id)
			return
		}
	}
}

func (s *Set) debug(msg string, err error) {
	if c := s.logger.Check(zapcore.DebugLevel, msg); c != nil {
		c.Write(zap.Error(err))
	}
}
