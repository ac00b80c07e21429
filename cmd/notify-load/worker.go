package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
//	parent → worker  drain <K> <ms>       K events were published; wait up to
//	                                      ms for all of this worker's deliveries
//	parent → worker  stop                 report now
//	worker → parent  {"type":"result",…}  then the worker exits
//
// A worker exits by itself at its deadline or when its stdin closes.

type workerConfig struct {
	url            string // may hold {user}
	proto          string // h1 or h2
	first, count   int    // global indexes of this worker's streams
	users          int
	perConn        int // h2: streams per connection
	connBase       int // global index of this worker's first connection
	srcIPs         int // spread connections over 127.0.0.1..127.0.0.<srcIPs>
	connectTimeout time.Duration
	concurrency    int
	deadline       time.Duration
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
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, 24 /* IP_BIND_ADDRESS_NO_PORT */, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return d
}

func (w *worker) markDial() {
	t := time.Now().UnixNano()
	w.mu.Lock()
	if w.firstDial == 0 || t < w.firstDial {
		w.firstDial = t
	}
	w.mu.Unlock()
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
// it fails or the process exits.
func (w *worker) runH1(ctx context.Context, i int, sem chan struct{}, wg *sync.WaitGroup) {
	user := i % w.cfg.users
	fail := func(err error) {
		w.connErrs.add(err)
		<-sem
		wg.Done()
	}
	u, err := url.Parse(userURL(w.cfg.url, user))
	if err != nil {
		fail(err)
		return
	}
	w.markDial()
	conn, err := w.dialer(w.cfg.connBase+i-w.cfg.first).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		fail(err)
		return
	}
	w.conns.Add(1)
	_ = conn.SetDeadline(time.Now().Add(w.cfg.connectTimeout))
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nAuthorization: Bearer u" + strconv.Itoa(user) +
		"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		fail(err)
		return
	}
	br := bufio.NewReaderSize(conn, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		fail(err)
		return
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		fail(statusError(resp.StatusCode))
		return
	}
	_ = conn.SetDeadline(time.Time{})
	w.established(user)
	<-sem
	wg.Done()

	st := &streamState{user: []byte(strconv.Itoa(user)), c: &w.c, now: w.now}
	err = readSSE(bufio.NewReaderSize(resp.Body, 1024), st)
	conn.Close()
	w.streamEnded(err)
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
	for c := 0; c*w.cfg.perConn < w.cfg.count; c++ {
		first := w.cfg.first + c*w.cfg.perConn
		n := min(w.cfg.perConn, w.cfg.first+w.cfg.count-first)
		d := w.dialer(w.cfg.connBase + c)
		tr := &http.Transport{
			Protocols:          &protos,
			DialContext:        d.DialContext,
			DisableCompression: true,
		}
		sem <- struct{}{}
		w.markDial()
		dctx, cancel := context.WithTimeout(ctx, w.cfg.connectTimeout)
		cc, err := tr.NewClientConn(dctx, "http", u.Host)
		cancel()
		<-sem
		if err != nil {
			for range n {
				w.connErrs.add(err)
			}
			continue
		}
		w.conns.Add(1)
		for i := first; i < first+n; i++ {
			sem <- struct{}{}
			wg.Add(1)
			go w.runH2(ctx, cc, i, sem, wg)
		}
	}
}

func (w *worker) runH2(ctx context.Context, cc *http.ClientConn, i int, sem chan struct{}, wg *sync.WaitGroup) {
	user := i % w.cfg.users
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, userURL(w.cfg.url, user), nil)
	if err != nil {
		w.connErrs.add(err)
		<-sem
		wg.Done()
		return
	}
	req.Header.Set("Authorization", "Bearer u"+strconv.Itoa(user))
	req.Header.Set("Accept", "text/event-stream")
	timer := time.AfterFunc(w.cfg.connectTimeout, cancel)
	// Take a stream slot first: RoundTrip would wait for one forever when
	// -streams-per-conn exceeds the server's SETTINGS_MAX_CONCURRENT_STREAMS.
	// Until the server's SETTINGS arrive the client assumes 100 slots, so a
	// refusal is retried for a while.
	for err = cc.Reserve(); err != nil && sctx.Err() == nil && cc.Err() == nil; err = cc.Reserve() {
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		if cc.Err() == nil {
			err = errNoStreamSlot
		}
		timer.Stop()
		w.connErrs.add(err)
		<-sem
		wg.Done()
		return
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
		w.connErrs.add(err)
		<-sem
		wg.Done()
		return
	}
	w.established(user)
	<-sem
	wg.Done()

	st := &streamState{user: []byte(strconv.Itoa(user)), c: &w.c, now: w.now}
	err = readSSE(bufio.NewReaderSize(resp.Body, 1024), st)
	resp.Body.Close()
	w.streamEnded(err)
}

// pubCount is how many of K round-robin events went to user u of U.
func pubCount(u, k, users int) uint64 {
	n := k / users
	if u < k%users {
		n++
	}
	return uint64(n)
}

func (w *worker) expected(k int) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var e uint64
	for _, u := range w.estUsers {
		e += pubCount(int(u), k, w.cfg.users)
	}
	return e
}

func (w *worker) result(expected uint64, drain time.Duration) resultMsg {
	w.stopping.Store(true)
	w.mu.Lock()
	est := len(w.estUsers)
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
	_ = fs.Parse(args)
	if cfg.users < 1 || cfg.count < 0 || cfg.concurrency < 1 || cfg.perConn < 1 {
		fmt.Fprintln(os.Stderr, "worker: bad flags")
		return 2
	}

	nofile := raiseNofile()
	w := &worker{cfg: cfg}
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
		r := w.result(0, 0)
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
		case "stop":
			emit(w.result(0, 0))
			time.Sleep(300 * time.Millisecond) // the parent reads this process's CPU
			return 0
		case "drain":
			if len(f) != 3 {
				continue
			}
			k, _ := strconv.Atoi(f[1])
			ms, _ := strconv.Atoi(f[2])
			exp := w.expected(k)
			start := time.Now()
			limit := start.Add(time.Duration(ms) * time.Millisecond)
			for w.c.unique.Load() < exp && time.Now().Before(limit) {
				time.Sleep(20 * time.Millisecond)
			}
			// A short grace to catch duplicates arriving after the last
			// expected event.
			time.Sleep(100 * time.Millisecond)
			emit(w.result(exp, time.Since(start)))
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
