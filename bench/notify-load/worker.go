package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A worker process holds a slice of the streams. It talks to the parent over
// its stdin and stdout, one JSON object or command per line:
//
//	worker → parent  {"type":"ready",…}   every stream was attempted
//	parent → worker  start <unix ns>      publishing started then (the time
//	                                      base of the storm, -reconnect-at, and
//	                                      of the events' schedule)
//	parent → worker  drain <K> <ms> [<R>] K events were published; wait up to
//	                                      ms for all of this worker's deliveries;
//	                                      R (unix ns): the reload, the time base
//	                                      of the per-stream figures (reload.go)
//	parent → worker  stop                 report now
//	worker → parent  {"type":"result",…}  then the worker exits
//
// A worker exits by itself at its deadline or when its stdin closes.

type workerConfig struct {
	url            string // may hold {user}; h1: several, comma-separated (see streamURL)
	proto          string // h1 or h2
	first, count   int    // global indexes of this worker's streams
	users          int
	perConn        int // h2: streams per connection
	connBase       int // global index of this worker's first connection
	srcIPs         int // spread connections over 127.0.0.1..127.0.0.<srcIPs>
	connectTimeout time.Duration
	concurrency    int
	deadline       time.Duration
	reconnectAt    time.Duration // h1: every stream reconnects this long after start; 0 off
	rate           float64       // events/s of the run: when events were published, for unresumable gaps
	// reconnect: a stream that ends reconnects as an EventSource does
	// (eventsource.go), after its retry field's delay (retry when it
	// sent none) with Last-Event-ID when it received an id.
	reconnect bool
	retry     time.Duration
	fan       int // > 0: fan-out events to groups of users (fan.go)
	readBuf   int // bytes of a stream's read buffers; 0: 1 KiB
}

// readBuf is the size of a stream's read buffers: 1 KiB holds a load-tool
// message; big ones (a fan-out message listing its users) are read in
// fewer system calls with more.
func (w *worker) readBuf() int { return max(w.cfg.readBuf, 1024) }

// gapSlack widens the unresumable gap of a stream reconnecting without a
// last event ID to events published this long before its connection was
// closed: they may still have been on their way. (Such a stream received
// nothing before, so anything older must have been lost and is counted so.)
const gapSlack = time.Second

// gapRange returns the seqs of user's events (event k goes to user k mod
// users with seq k/users+1) published from from−gapSlack to to (unix ns),
// event k being published at pubStart + k/rate (the publisher is late, never
// early, so to needs no slack). lo is 0 when there is none.
func gapRange(user, users int, rate float64, pubStart, from, to int64) (lo, hi uint64) {
	kLo := math.Ceil(float64(from-int64(gapSlack)-pubStart) * rate / 1e9)
	kHi := math.Floor(float64(to-pubStart) * rate / 1e9)
	kLo = max(kLo, 0)
	if kHi < kLo || kHi < float64(user) {
		return 0, 0
	}
	hi = uint64((int64(kHi)-int64(user))/int64(users)) + 1
	lo = 1
	if kLo > float64(user) {
		lo = uint64((int64(kLo)-int64(user)+int64(users)-1)/int64(users)) + 1
	}
	if lo > hi {
		return 0, 0
	}
	return lo, hi
}

type readyMsg struct {
	Type        string         `json:"type"`
	Established int            `json:"established"`
	Failed      int            `json:"failed"`
	Conns       int            `json:"conns"`
	FirstDialNs int64          `json:"first_dial_ns"`
	LastOKNs    int64          `json:"last_ok_ns"`
	Errors      map[string]int `json:"errors,omitempty"`
	Nofile      uint64         `json:"nofile"`
}

type resultMsg struct {
	Type        string         `json:"type"`
	Established int            `json:"established"`
	ClosedEarly uint64         `json:"closed_early"`
	CloseErrors map[string]int `json:"close_errors,omitempty"`
	Expected    uint64         `json:"expected"`
	Events      uint64         `json:"events"`
	Unique      uint64         `json:"unique"`
	Dup         uint64         `json:"dup"`
	OOO         uint64         `json:"ooo"`
	Misrouted   uint64         `json:"misrouted"`
	Unparsed    uint64         `json:"unparsed"`
	Comments    uint64         `json:"comments"`
	Hist        [][2]uint64    `json:"hist,omitempty"`
	MaxNs       int64          `json:"max_ns"`
	LastEventNs int64          `json:"last_event_ns"`
	DrainMs     int64          `json:"drain_ms"`
	Deadline    bool           `json:"deadline,omitempty"`

	// Per stream (streamState), with -reconnect the connection records.
	Streams streamFigures `json:"streams"`

	// The reconnect storm (-reconnect-at).
	Resets          uint64         `json:"resets"`
	GapStreams      uint64         `json:"gap_streams"`  // streams reconnected without a last event ID, with a gap
	GapEvents       uint64         `json:"gap_events"`   // events in their gaps: not expected
	GapReceived     uint64         `json:"gap_received"` // of those, received all the same
	HistCatch       [][2]uint64    `json:"hist_catch,omitempty"`
	MaxCatchNs      int64          `json:"max_catch_ns"`
	StormStartNs    int64          `json:"storm_start_ns,omitempty"` // the first close
	StormLastOKNs   int64          `json:"storm_last_ok_ns,omitempty"`
	Reconnects      uint64         `json:"reconnects"` // re-established (200)
	ReconnectsID    uint64         `json:"reconnects_with_id"`
	ReconnectFailed uint64         `json:"reconnects_failed"`
	ReconnectErrors map[string]int `json:"reconnect_errors,omitempty"`
}

// errCounts counts errors by a short description without addresses.
type errCounts struct {
	mu sync.Mutex
	m  map[string]int
}

func (e *errCounts) add(err error) {
	k := errKey(err)
	e.mu.Lock()
	if e.m == nil {
		e.m = make(map[string]int)
	}
	if len(e.m) < 20 || e.m[k] > 0 {
		e.m[k]++
	} else {
		e.m["other"]++
	}
	e.mu.Unlock()
}

func (e *errCounts) snapshot() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.m))
	for k, v := range e.m {
		out[k] = v
	}
	return out
}

// errKey describes err without the addresses that make each one unique.
func errKey(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		inner := op.Err
		var se *os.SyscallError
		if errors.As(inner, &se) {
			inner = se.Err
		}
		if op.Timeout() {
			return op.Op + ": timeout"
		}
		return op.Op + ": " + inner.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	s := err.Error()
	// HTTP/2 stream errors name the stream: keep one key for all of them.
	if i := strings.Index(s, "stream ID "); i >= 0 {
		if j := strings.IndexByte(s[i:], ';'); j >= 0 {
			s = s[:i] + "stream ID N" + s[i+j:]
		}
	}
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

var errNoStreamSlot = errors.New("no free stream on the h2 connection: the server's max concurrent streams is below -streams-per-conn")

type statusError int

func (e statusError) Error() string { return "status " + strconv.Itoa(int(e)) }

// worker holds the state of one worker process.
type worker struct {
	cfg      workerConfig
	c        counters
	lastRecv atomic.Int64
	stopping atomic.Bool

	closedEarly atomic.Uint64
	closeErrs   errCounts
	connErrs    errCounts

	mu        sync.Mutex
	estUsers  []int32 // user index of every established stream
	firstDial int64
	lastOK    int64
	conns     atomic.Int64

	// The reconnect storm: storm is cancelled when it starts, which closes
	// every HTTP/1.1 connection; each stream then reconnects once, at most
	// cfg.concurrency at a time (stormSem).
	storm        context.Context
	fireStorm    context.CancelFunc
	stormSem     chan struct{}
	stormOnce    sync.Once
	stormStart   atomic.Int64
	stormLastOK  atomic.Int64
	reconnects   atomic.Uint64
	reconnectsID atomic.Uint64
	reconnFailed atomic.Uint64
	reconnErrs   errCounts
	pubStart     atomic.Int64 // from the start command
	gaps         []gap        // of streams reconnected without a last event ID; under mu

	states     []*streamState // of every established stream; under mu
	attempting atomic.Int64   // reconnect attempts under way (reopen)
	quit       chan struct{}  // closed when the worker reports: reconnecting streams stop
	quitMu     sync.Once
}

// gap is the unresumable gap of one stream: seqs lo..hi of its user.
type gap struct {
	user   int32
	lo, hi uint64
}

func newWorker(cfg workerConfig) *worker {
	w := &worker{cfg: cfg, quit: make(chan struct{})}
	if cfg.retry <= 0 {
		w.cfg.retry = 3 * time.Second
	}
	if cfg.reconnectAt > 0 && cfg.proto == "h1" {
		w.storm, w.fireStorm = context.WithCancel(context.Background())
		w.stormSem = make(chan struct{}, cfg.concurrency)
	}
	return w
}

// startStorm closes every stream's connection (once); the streams reconnect.
func (w *worker) startStorm() {
	if w.storm == nil {
		return
	}
	w.stormOnce.Do(func() {
		w.stormStart.Store(time.Now().UnixNano())
		w.fireStorm()
	})
}

// reconnected records a stream re-established by the storm.
func (w *worker) reconnected(withID bool) {
	t := time.Now().UnixNano()
	w.reconnects.Add(1)
	if withID {
		w.reconnectsID.Add(1)
	}
	for {
		old := w.stormLastOK.Load()
		if t <= old || w.stormLastOK.CompareAndSwap(old, t) {
			return
		}
	}
}

func (w *worker) now() time.Time {
	t := time.Now()
	w.lastRecv.Store(t.UnixNano())
	return t
}

func (w *worker) dialer(connIndex int) *net.Dialer {
	d := &net.Dialer{Timeout: w.cfg.connectTimeout}
	if w.cfg.srcIPs > 1 {
		ip := net.IPv4(127, 0, byte(connIndex%w.cfg.srcIPs/250), byte(1+connIndex%w.cfg.srcIPs%250))
		d.LocalAddr = &net.TCPAddr{IP: ip}
		// Choose the port at connect time, per destination, instead of
		// reserving one per source address at bind time.
		d.Control = bindNoPort
	}
	return d
}

// bindNoPort is a net.Dialer Control for a dialer with a LocalAddr: the
// kernel picks the port at connect time, per destination, instead of
// reserving one per source address at bind time (IP_BIND_ADDRESS_NO_PORT).
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, 24 /* IP_BIND_ADDRESS_NO_PORT */, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func (w *worker) markDial() {
	t := time.Now().UnixNano()
	w.mu.Lock()
	if w.firstDial == 0 || t < w.firstDial {
		w.firstDial = t
	}
	w.mu.Unlock()
}

// connected records how opening a stream of user ended and frees its
// connect slot; it reports whether the stream is open.
func (w *worker) connected(user int, err error, sem chan struct{}, wg *sync.WaitGroup) bool {
	if err != nil {
		w.connErrs.add(err)
	} else {
		w.established(user)
	}
	<-sem
	wg.Done()
	return err == nil
}

func (w *worker) established(user int) {
	t := time.Now().UnixNano()
	w.mu.Lock()
	w.estUsers = append(w.estUsers, int32(user))
	if t > w.lastOK {
		w.lastOK = t
	}
	w.mu.Unlock()
}

// streamEnded records a stream that ended before the worker was told to stop.
func (w *worker) streamEnded(err error) {
	if w.stopping.Load() {
		return
	}
	w.closedEarly.Add(1)
	if err == nil {
		err = io.EOF
	}
	w.closeErrs.add(err)
}

// streamURL is the URL of stream i (h1): -url may list several servers,
// comma-separated, and stream i goes to the (i mod n)th, so that the
// streams of a user spread over the servers as they would behind a load
// balancer.
func (w *worker) streamURL(i int) string {
	urls := strings.Split(w.cfg.url, ",")
	return urls[i%len(urls)]
}

func userURL(raw string, user int) string {
	return strings.ReplaceAll(raw, "{user}", strconv.Itoa(user))
}

// connectAll opens every stream of the worker and returns when each one is
// established or has failed.
func (w *worker) connectAll(ctx context.Context) {
	sem := make(chan struct{}, w.cfg.concurrency)
	var wg sync.WaitGroup
	switch w.cfg.proto {
	case "h2":
		w.connectH2(ctx, sem, &wg)
	default:
		for i := w.cfg.first; i < w.cfg.first+w.cfg.count; i++ {
			sem <- struct{}{}
			wg.Add(1)
			go w.runH1(ctx, i, sem, &wg)
		}
	}
	wg.Wait()
}

// runH1 opens stream i over its own HTTP/1.1 connection and reads it until
// it fails or the process exits. When the reconnect storm closes its
// connection, it reconnects once with the last event ID it received; with
// -reconnect, it reconnects whenever the stream ends, as an EventSource.
func (w *worker) runH1(ctx context.Context, i int, sem chan struct{}, wg *sync.WaitGroup) {
	user := i % w.cfg.users
	w.markDial()
	conn, body, err := w.openH1(ctx, i, user, nil)
	if !w.connected(user, err, sem, wg) {
		return
	}

	st := w.newState(user)
	storm := w.storm
	for {
		stop := func() bool { return true }
		if storm != nil {
			c := conn
			stop = context.AfterFunc(storm, func() { c.Close() })
		}
		err = readSSE(body, st)
		conn.Close()
		if stop() { // not closed by the storm
			if !w.cfg.reconnect {
				w.streamEnded(err)
				return
			}
			if !w.reopen(ctx, st, err, func(lastID []byte) error {
				conn, body, err = w.openH1(ctx, i, user, lastID)
				return err
			}) {
				return
			}
			continue
		}
		storm = nil // one reconnect per stream
		w.stormSem <- struct{}{}
		conn, body, err = w.openH1(ctx, i, user, st.lastID)
		<-w.stormSem
		if err != nil {
			w.reconnFailed.Add(1)
			w.reconnErrs.add(err)
			return
		}
		st.resumedNs = time.Now().UnixNano()
		if len(st.lastID) == 0 {
			lo, hi := gapRange(user, w.cfg.users, w.cfg.rate, w.pubStart.Load(), w.stormStart.Load(), st.resumedNs)
			if lo > 0 {
				st.gapLo, st.gapHi = lo, hi
				w.mu.Lock()
				w.gaps = append(w.gaps, gap{int32(user), lo, hi})
				w.mu.Unlock()
			}
		}
		w.reconnected(len(st.lastID) > 0)
	}
}

// newState returns the state of a new established stream of user, kept
// for the per-stream figures.
func (w *worker) newState(user int) *streamState {
	st := &streamState{user: []byte(strconv.Itoa(user)), userN: user, c: &w.c, now: w.now, fan: uint64(max(w.cfg.fan, 0))}
	w.mu.Lock()
	w.states = append(w.states, st)
	w.mu.Unlock()
	return st
}

// openH1 connects stream i of user and sends its request, with a
// Last-Event-ID header when lastID is not empty; it returns the connection
// and the reader of the event stream once the server answered 200.
func (w *worker) openH1(ctx context.Context, i, user int, lastID []byte) (net.Conn, *bufio.Reader, error) {
	u, err := url.Parse(userURL(w.streamURL(i), user))
	if err != nil {
		return nil, nil, err
	}
	conn, err := w.dialer(w.cfg.connBase+i-w.cfg.first).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, nil, err
	}
	w.conns.Add(1)
	_ = conn.SetDeadline(time.Now().Add(w.cfg.connectTimeout))
	if u.Scheme == "https" {
		// HTTP/1.1 over TLS (ALPN), the server's certificate unchecked:
		// a benchmark's self-signed one.
		tc := tls.Client(conn, benchTLS("http/1.1"))
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, err
		}
		conn = tc
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nAuthorization: Bearer u" + strconv.Itoa(user) +
		"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
	if len(lastID) > 0 {
		req += "Last-Event-ID: " + string(lastID) + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		conn.Close()
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, w.readBuf()), nil)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, nil, statusError(resp.StatusCode)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, bufio.NewReaderSize(resp.Body, w.readBuf()), nil
}

// connectH2 opens the worker's streams over h2c connections, perConn streams
// on each.
func (w *worker) connectH2(ctx context.Context, sem chan struct{}, wg *sync.WaitGroup) {
	u, err := url.Parse(w.cfg.url)
	if err != nil {
		w.connErrs.add(err)
		return
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	if u.Scheme == "https" { // HTTP/2 over TLS
		protos = http.Protocols{}
		protos.SetHTTP2(true)
	}
	for c := 0; c*w.cfg.perConn < w.cfg.count; c++ {
		first := w.cfg.first + c*w.cfg.perConn
		n := min(w.cfg.perConn, w.cfg.first+w.cfg.count-first)
		d := w.dialer(w.cfg.connBase + c)
		tr := &http.Transport{
			Protocols:          &protos,
			DialContext:        d.DialContext,
			DisableCompression: true,
			TLSClientConfig:    benchTLS("h2"),
		}
		slot := &h2Slot{tr: tr, scheme: u.Scheme, host: u.Host, timeout: w.cfg.connectTimeout}
		sem <- struct{}{}
		w.markDial()
		dctx, cancel := context.WithTimeout(ctx, w.cfg.connectTimeout)
		cc, err := tr.NewClientConn(dctx, u.Scheme, u.Host)
		cancel()
		<-sem
		if err != nil {
			for range n {
				w.connErrs.add(err)
			}
			continue
		}
		w.conns.Add(1)
		slot.cc, slot.born = cc, time.Now()
		for i := first; i < first+n; i++ {
			sem <- struct{}{}
			wg.Add(1)
			go w.runH2(ctx, slot, i, sem, wg)
		}
	}
}

func (w *worker) runH2(ctx context.Context, slot *h2Slot, i int, sem chan struct{}, wg *sync.WaitGroup) {
	user := i % w.cfg.users
	body, err := w.openH2(ctx, slot, user, nil, false)
	if !w.connected(user, err, sem, wg) {
		return
	}

	st := w.newState(user)
	for {
		err = readSSE(bufio.NewReaderSize(body, w.readBuf()), st)
		body.Close()
		if !w.cfg.reconnect {
			w.streamEnded(err)
			return
		}
		if !w.reopen(ctx, st, err, func(lastID []byte) error {
			body, err = w.openH2(ctx, slot, user, lastID, true)
			return err
		}) {
			return
		}
	}
}

// openH2 opens a stream of user on slot's connection, with Last-Event-ID
// when lastID is not empty, and returns its body once the server answered
// 200; closing the body ends the stream. again (a reconnect) lets it
// replace a connection that takes no new stream (closed, or after a
// GOAWAY) with a new one, as a browser would.
func (w *worker) openH2(ctx context.Context, slot *h2Slot, user int, lastID []byte, again bool) (io.ReadCloser, error) {
	sctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, userURL(w.cfg.url, user), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer u"+strconv.Itoa(user))
	req.Header.Set("Accept", "text/event-stream")
	if len(lastID) > 0 {
		req.Header.Set("Last-Event-ID", string(lastID))
	}
	timer := time.AfterFunc(w.cfg.connectTimeout, cancel)
	// Take a stream slot first: RoundTrip would wait for one forever when
	// -streams-per-conn exceeds the server's SETTINGS_MAX_CONCURRENT_STREAMS.
	// Until the server's SETTINGS arrive the client assumes 100 slots, so a
	// refusal is retried for a while.
	cc, born := slot.get()
	for {
		if err = cc.Reserve(); err == nil {
			break
		}
		if sctx.Err() == nil && cc.Err() == nil && (!again || time.Since(born) < time.Second) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if sctx.Err() != nil || !again {
			if cc.Err() == nil {
				err = errNoStreamSlot
			}
			break
		}
		if cc, born, err = slot.redial(sctx, cc, &w.conns); err != nil {
			break
		}
	}
	if err != nil {
		timer.Stop()
		cancel()
		return nil, err
	}
	resp, err := cc.RoundTrip(req)
	if err == nil && !timer.Stop() {
		resp.Body.Close()
		err = context.DeadlineExceeded
	}
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err = statusError(resp.StatusCode)
	}
	if err != nil {
		timer.Stop()
		cancel()
		return nil, err
	}
	return cancelOnClose{resp.Body, cancel}, nil
}

// cancelOnClose is a response body whose Close also cancels its request.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// h2Slot is the connection a group of h2 streams share: a reconnecting
// stream takes a new one when it no longer takes streams.
type h2Slot struct {
	tr           *http.Transport
	scheme, host string
	timeout      time.Duration

	mu   sync.Mutex
	cc   *http.ClientConn
	born time.Time
}

func (sl *h2Slot) get() (*http.ClientConn, time.Time) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.cc, sl.born
}

// redial replaces bad, the slot's connection, with a new one, unless
// another stream already did, and returns the slot's connection; dialed
// counts the connections made.
func (sl *h2Slot) redial(ctx context.Context, bad *http.ClientConn, dialed *atomic.Int64) (*http.ClientConn, time.Time, error) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.cc != bad {
		return sl.cc, sl.born, nil
	}
	dctx, cancel := context.WithTimeout(ctx, sl.timeout)
	defer cancel()
	cc, err := sl.tr.NewClientConn(dctx, sl.scheme, sl.host)
	if err != nil {
		return bad, sl.born, err
	}
	dialed.Add(1)
	sl.cc, sl.born = cc, time.Now()
	return cc, sl.born, nil
}

// pubCount is how many of K round-robin events went to user u of U.
func pubCount(u, k, users int) uint64 {
	n := k / users
	if u < k%users {
		n++
	}
	return uint64(n)
}

// sent is how many of the first k events are for a stream of user.
func (w *worker) sent(user, k int) uint64 {
	if w.cfg.fan > 0 {
		return pubCount(user%w.cfg.fan, k, w.cfg.fan)
	}
	return pubCount(user, k, w.cfg.users)
}

// expected is how many deliveries the worker's streams must get of the
// first k events, and how many of those fell in unresumable gaps (not
// included).
func (w *worker) expected(k int) (e, gaps uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, u := range w.estUsers {
		e += w.sent(int(u), k)
	}
	for _, g := range w.gaps {
		if hi := min(g.hi, pubCount(int(g.user), k, w.cfg.users)); hi >= g.lo {
			gaps += hi - g.lo + 1
		}
	}
	return e - gaps, gaps
}

func (w *worker) result(expected, gaps uint64, drain time.Duration) resultMsg {
	w.stopping.Store(true)
	w.quitMu.Do(func() { close(w.quit) })
	w.mu.Lock()
	est, gapStreams := len(w.estUsers), len(w.gaps)
	w.mu.Unlock()
	return resultMsg{
		Type:        "result",
		Established: est,
		ClosedEarly: w.closedEarly.Load(),
		CloseErrors: w.closeErrs.snapshot(),
		Expected:    expected,
		Events:      w.c.events.Load(),
		Unique:      w.c.unique.Load(),
		Dup:         w.c.dup.Load(),
		OOO:         w.c.ooo.Load(),
		Misrouted:   w.c.misrouted.Load(),
		Unparsed:    w.c.unparsed.Load(),
		Comments:    w.c.comments.Load(),
		Hist:        w.c.lat.sparse(),
		MaxNs:       w.c.lat.max.Load(),
		LastEventNs: w.lastRecv.Load(),
		DrainMs:     drain.Milliseconds(),

		Resets:     w.c.resets.Load(),
		GapStreams: uint64(gapStreams),
		GapEvents:  gaps, GapReceived: w.c.gapRecv.Load(),
		HistCatch:       w.c.latCatch.sparse(),
		MaxCatchNs:      w.c.latCatch.max.Load(),
		StormStartNs:    w.stormStart.Load(),
		StormLastOKNs:   w.stormLastOK.Load(),
		Reconnects:      w.reconnects.Load(),
		ReconnectsID:    w.reconnectsID.Load(),
		ReconnectFailed: w.reconnFailed.Load(),
		ReconnectErrors: w.reconnErrs.snapshot(),
	}
}

// workerMain is the entry point of `notify-load worker`.
func workerMain(args []string) int {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	var cfg workerConfig
	fs.StringVar(&cfg.url, "url", "", "stream URL; {user} is replaced by the user id")
	fs.StringVar(&cfg.proto, "proto", "h1", "h1 or h2 (h2c prior knowledge)")
	fs.IntVar(&cfg.first, "first", 0, "global index of the first stream")
	fs.IntVar(&cfg.count, "count", 0, "streams")
	fs.IntVar(&cfg.users, "users", 1, "users in the whole run")
	fs.IntVar(&cfg.perConn, "per-conn", 250, "h2: streams per connection")
	fs.IntVar(&cfg.connBase, "conn-base", 0, "global index of the first connection")
	fs.IntVar(&cfg.srcIPs, "src-ips", 1, "source addresses")
	fs.DurationVar(&cfg.connectTimeout, "connect-timeout", 10*time.Second, "")
	fs.IntVar(&cfg.concurrency, "concurrency", 256, "")
	fs.DurationVar(&cfg.deadline, "deadline", 5*time.Minute, "")
	fs.DurationVar(&cfg.reconnectAt, "reconnect-at", 0, "h1: every stream reconnects this long after the parent's start command (0: never)")
	fs.Float64Var(&cfg.rate, "rate", 0, "events/s published (for the gaps of streams reconnecting without a last event ID)")
	fs.BoolVar(&cfg.reconnect, "reconnect", false, "a stream that ends reconnects as an EventSource does")
	fs.DurationVar(&cfg.retry, "retry", 3*time.Second, "-reconnect: the delay of a stream whose server sent no retry field")
	fs.IntVar(&cfg.fan, "fan", 0, "fan-out events to this many groups (fan.go); 0: one user per event")
	fs.IntVar(&cfg.readBuf, "read-buffer", 1024, "bytes of each stream's read buffers")
	_ = fs.Parse(args)
	if cfg.users < 1 || cfg.count < 0 || cfg.concurrency < 1 || cfg.perConn < 1 || cfg.fan < 0 {
		fmt.Fprintln(os.Stderr, "worker: bad flags")
		return 2
	}

	nofile := raiseNofile()
	w := newWorker(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.deadline)
	defer cancel()
	out := bufio.NewWriter(os.Stdout)
	var outMu sync.Mutex
	emit := func(v any) {
		outMu.Lock()
		defer outMu.Unlock()
		_ = jsonEncode(out, v)
		_ = out.Flush()
	}
	// The deadline bounds the worker whatever the parent does.
	time.AfterFunc(cfg.deadline, func() {
		r := w.result(0, 0, 0)
		r.Deadline = true
		emit(r)
		os.Exit(3)
	})

	w.connectAll(ctx)
	w.mu.Lock()
	ready := readyMsg{Type: "ready", Established: len(w.estUsers), FirstDialNs: w.firstDial,
		LastOKNs: w.lastOK, Nofile: nofile}
	w.mu.Unlock()
	ready.Failed = cfg.count - ready.Established
	ready.Conns = int(w.conns.Load())
	ready.Errors = w.connErrs.snapshot()
	emit(ready)

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "start":
			if len(f) != 2 {
				continue
			}
			ns, _ := strconv.ParseInt(f[1], 10, 64)
			w.pubStart.Store(ns)
			if w.storm != nil {
				time.AfterFunc(time.Until(time.Unix(0, ns).Add(cfg.reconnectAt)), w.startStorm)
			}
		case "stop":
			emit(w.result(0, 0, 0))
			time.Sleep(300 * time.Millisecond) // the parent reads this process's CPU
			return 0
		case "drain":
			if len(f) != 3 && len(f) != 4 {
				continue
			}
			k, _ := strconv.Atoi(f[1])
			ms, _ := strconv.Atoi(f[2])
			var reloadNs int64
			if len(f) == 4 {
				reloadNs, _ = strconv.ParseInt(f[3], 10, 64)
			}
			exp, gaps := w.expected(k)
			start := time.Now()
			limit := start.Add(time.Duration(ms) * time.Millisecond)
			for w.c.unique.Load() < exp && time.Now().Before(limit) {
				time.Sleep(20 * time.Millisecond)
			}
			// A short grace to catch duplicates arriving after the last
			// expected event.
			time.Sleep(100 * time.Millisecond)
			r := w.result(exp, gaps, time.Since(start))
			r.Streams = w.perStream(k, reloadNs)
			emit(r)
			time.Sleep(300 * time.Millisecond) // the parent reads this process's CPU
			return 0
		}
	}
	// The parent went away.
	return 1
}

// sortedKeys returns m's keys by decreasing count.
func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	return keys
}

// benchTLS is the load tool's TLS client configuration for https URLs:
// ALPN proto, and no check of the server's certificate (the benchmark's
// self-signed one).
func benchTLS(proto string) *tls.Config {
	return &tls.Config{NextProtos: []string{proto}, InsecureSkipVerify: true} //nolint:gosec // a benchmark's own certificate
}
