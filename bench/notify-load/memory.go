package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// The memory workloads (`notify-load memory`): what the server's memory does
// when a client never reads, when one message is huge, and when clients
// resume from the start of a stream of 300 MB. Each reports the server's RSS
// before, at its peak and after (see rssPeak), and what the clients saw.
//
//	-kind slow    one stream that never reads (a tiny receive buffer), then
//	              -count messages of -size bytes to its user at -rate: is it
//	              closed (slow_client), when, and what does it cost meanwhile?
//	-kind big     one message of -size bytes to one reading stream: delivered
//	              (or, with -expect-drop, dropped as too_large), at what cost?
//	-kind fill    XADD -count entries of -size bytes for -user (before the
//	              server starts: bench/run.sh runs it first)
//	-kind replay  stream mode, after fill: the server's RSS at start, then
//	              -resumers clients of -user resume at once from
//	              -last-event-id while a live client of another user receives
//	              -live-rate events/s: statuses, resets, time to complete,
//	              the live client's latency meanwhile.

// memorySummary is the memory part of the JSON summary.
type memorySummary struct {
	Kind         string  `json:"kind"`
	MessageBytes int     `json:"message_bytes"`
	Messages     int     `json:"messages"`
	Rate         float64 `json:"rate,omitempty"`

	RSSBeforeKiB int64   `json:"rss_before_kib"`
	RSSPeakKiB   int64   `json:"rss_peak_kib"`
	RSSAfterKiB  int64   `json:"rss_after_kib"`
	PeakAtSecs   float64 `json:"peak_at_secs,omitempty"` // sampled this long after the measure started (0: the kernel's VmHWM)

	// slow
	Published      int     `json:"published,omitempty"`
	Closed         bool    `json:"closed"`                      // the server closed the stream
	ClosedAfterSec float64 `json:"closed_after_secs,omitempty"` // the slow_client drop, after publishing started (-1 never seen)
	ClosedAfterMsg int     `json:"closed_after_messages,omitempty"`
	ClientBytes    int64   `json:"client_bytes,omitempty"` // what the stream had for its client, read at the end
	ClientEvents   int     `json:"client_events,omitempty"`

	// big
	Delivered  bool    `json:"delivered"`
	DeliveryMs float64 `json:"delivery_ms,omitempty"`
	ExpectDrop bool    `json:"expect_drop,omitempty"`

	// replay
	StartPeakKiB   int64          `json:"start_peak_kib,omitempty"` // VmHWM from the server's start to the first measure
	StartRSSKiB    int64          `json:"start_rss_kib,omitempty"`
	Resumers       int            `json:"resumers,omitempty"`
	Statuses       map[string]int `json:"statuses,omitempty"`
	ResetReasons   map[string]int `json:"reset_reasons,omitempty"`
	Complete       int            `json:"complete,omitempty"` // resumers that got the last entry
	CompleteSecs   float64        `json:"complete_secs,omitempty"`
	ReplayedEvents int            `json:"replayed_events,omitempty"`
	ReplayedMiB    float64        `json:"replayed_mib,omitempty"`
	LiveExpected   int            `json:"live_expected,omitempty"`
	LiveReceived   int            `json:"live_received,omitempty"`
	LiveP50ms      float64        `json:"live_p50_ms,omitempty"`
	LiveMaxms      float64        `json:"live_max_ms,omitempty"`
	Errors         map[string]int `json:"errors,omitempty"`
}

type memConfig struct {
	kind         string
	url          string
	redis        string
	channel      string
	stream       string
	mode         string // pubsub or stream: where messages go
	size, count  int
	rate         float64
	user         int
	rcvbuf       int
	wait, settle time.Duration
	expectDrop   bool
	resumers     int
	lastEventID  string
	liveRate     float64
	pids         []int
	metricsURL   string
}

func memoryMain(args []string) int {
	var cfg memConfig
	fs := flag.NewFlagSet("memory", flag.ExitOnError)
	fs.StringVar(&cfg.kind, "kind", "slow", "slow, big, fill or replay (see BENCHMARKS.md)")
	fs.StringVar(&cfg.url, "url", "http://127.0.0.1:8080/events", "stream URL")
	fs.StringVar(&cfg.redis, "redis", "127.0.0.1:6379", "Redis host:port")
	fs.StringVar(&cfg.channel, "channel", "notifications", "pub/sub channel")
	fs.StringVar(&cfg.stream, "stream", "notifications", "stream key (-mode stream, fill, replay)")
	fs.StringVar(&cfg.mode, "mode", "pubsub", "slow, big: pubsub (PUBLISH) or stream (XADD)")
	fs.IntVar(&cfg.size, "size", 1_000_000, "bytes per message")
	fs.IntVar(&cfg.count, "count", 300, "messages (slow) or entries (fill, replay)")
	fs.Float64Var(&cfg.rate, "rate", 20, "slow: messages per second")
	fs.IntVar(&cfg.user, "user", 0, "the user of the streams and messages")
	fs.IntVar(&cfg.rcvbuf, "rcvbuf", 4096, "slow: the non-reading client's socket receive buffer (bytes)")
	fs.DurationVar(&cfg.wait, "wait", 60*time.Second, "big, replay: longest wait for the delivery or the replays")
	fs.DurationVar(&cfg.settle, "settle", 2*time.Second, "wait before the first and after the last measure")
	fs.BoolVar(&cfg.expectDrop, "expect-drop", false, "big: the server must drop the message as too_large (max_message_size below -size)")
	fs.IntVar(&cfg.resumers, "resumers", 8, "replay: clients resuming at once")
	fs.StringVar(&cfg.lastEventID, "last-event-id", "1-0", "replay: the resumers' Last-Event-ID")
	fs.Float64Var(&cfg.liveRate, "live-rate", 20, "replay: events/s to the live client (user -user + 1) meanwhile")
	serverPids := fs.String("server-pids", "", "comma-separated pids of the server (RSS)")
	fs.StringVar(&cfg.metricsURL, "metrics-url", "", "Prometheus endpoint of the server (slow_client and too_large drops, resets)")
	label := fs.String("label", "", "name of the run in the summary")
	deadline := fs.Duration("deadline", 5*time.Minute, "the whole run ends by then, whatever happens")
	_ = fs.Parse(args)
	pids, err := parsePids(*serverPids)
	if err != nil || cfg.size < 100 || cfg.count < 1 || cfg.rate <= 0 || cfg.resumers < 1 {
		fmt.Fprintln(os.Stderr, "memory: bad flags (-server-pids, -size ≥ 100, -count, -rate, -resumers)")
		return 2
	}
	cfg.pids = pids
	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	time.AfterFunc(*deadline+10*time.Second, func() {
		fmt.Fprintln(os.Stderr, "memory: deadline passed; exiting")
		deadlineSummary(summary{Label: *label, URL: cfg.url, Memory: &memorySummary{Kind: cfg.kind}})
		os.Exit(3)
	})
	rdb := redis.NewClient(&redis.Options{Addr: cfg.redis, PoolSize: 4, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		fmt.Fprintln(os.Stderr, "memory: redis:", err)
		return 1
	}
	if cfg.kind == "fill" {
		start := time.Now()
		if err := fill(ctx, rdb, &cfg); err != nil {
			fmt.Fprintln(os.Stderr, "memory: fill:", err)
			return 1
		}
		fmt.Printf("filled %s with %d entries of %d bytes for user %d in %.1fs\n", cfg.stream, cfg.count, cfg.size, cfg.user, time.Since(start).Seconds())
		return 0
	}

	s := summary{Label: *label, URL: cfg.url, Proto: "h1", Mode: cfg.mode}
	ms := &memorySummary{Kind: cfg.kind, MessageBytes: cfg.size, Messages: cfg.count}
	s.Memory = ms
	var metricsBefore map[string]float64
	snapMetrics := func() {
		if cfg.metricsURL != "" {
			if metricsBefore, err = fetchMetrics(cfg.metricsURL); err != nil {
				fmt.Fprintln(os.Stderr, "memory: metrics:", err)
			}
		}
	}
	switch cfg.kind {
	case "slow":
		snapMetrics()
		s.OK = memSlow(ctx, rdb, &cfg, ms)
	case "big":
		ms.Messages, ms.ExpectDrop = 1, cfg.expectDrop
		snapMetrics()
		s.OK = memBig(ctx, rdb, &cfg, ms)
	case "replay":
		s.Mode = "stream"
		s.OK = memReplay(ctx, rdb, &cfg, ms, snapMetrics)
	default:
		fmt.Fprintln(os.Stderr, "memory: -kind must be slow, big, fill or replay")
		return 2
	}
	if metricsBefore != nil {
		if m, err := fetchMetrics(cfg.metricsURL); err == nil {
			s.MetricsDelta = metricDeltas(metricsBefore, m)
		}
	}
	fmt.Println(ms.report())
	printMetrics(s.MetricsDelta)
	fmt.Printf("result: %s\n", map[bool]string{true: "OK", false: "PROBLEMS (see above)"}[s.OK])
	b, _ := json.Marshal(s)
	fmt.Println(string(b))
	if !s.OK {
		return 1
	}
	return 0
}

// fill XADDs the entries of -kind fill, ten per round trip.
func fill(ctx context.Context, rdb *redis.Client, cfg *memConfig) error {
	pipe := rdb.Pipeline()
	for i := 1; i <= cfg.count; i++ {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: cfg.stream, Values: []any{"data", bigMessage(cfg.user, uint64(i), time.Now().UnixNano(), cfg.size)}})
		if i%10 == 0 || i == cfg.count {
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// send publishes one message where the server reads (cfg.mode).
func send(ctx context.Context, rdb *redis.Client, cfg *memConfig, msg []byte) error {
	if cfg.mode == "stream" {
		return rdb.XAdd(ctx, &redis.XAddArgs{Stream: cfg.stream, Values: []any{"data", msg}}).Err()
	}
	return rdb.Publish(ctx, cfg.channel, msg).Err()
}

// openStream opens an HTTP/1.1 stream of user (with Last-Event-ID when
// lastID is set) and returns the connection and the response, whatever its
// status. control, when set, prepares the socket before it connects.
func openStream(ctx context.Context, rawURL string, user int, lastID string, timeout time.Duration,
	control func(string, string, syscall.RawConn) error) (net.Conn, *http.Response, error) {
	u, err := url.Parse(userURL(rawURL, user))
	if err != nil {
		return nil, nil, err
	}
	d := net.Dialer{Timeout: timeout, Control: control}
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nAuthorization: Bearer u" + strconv.Itoa(user) + "\r\nAccept: text/event-stream\r\n"
	if lastID != "" {
		req += "Last-Event-ID: " + lastID + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		c.Close()
		return nil, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 1024), nil)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, resp, nil
}

// rcvbufControl sets a socket's receive buffer before it connects, so that
// the window it advertises stays that small.
func rcvbufControl(n int) func(string, string, syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
		}); err != nil {
			return err
		}
		return serr
	}
}

// metricValue is one series of the server's metrics; -1 when unreadable.
func metricValue(url, key string) float64 {
	if url == "" {
		return -1
	}
	m, err := fetchMetrics(url)
	if err != nil {
		return -1
	}
	return m[key]
}

const (
	metricSlowClient = `caddy_notify_dropped_total{reason="slow_client"}`
	metricTooLarge   = `caddy_notify_dropped_total{reason="too_large"}`
)

// memSlow is -kind slow.
func memSlow(ctx context.Context, rdb *redis.Client, cfg *memConfig, ms *memorySummary) bool {
	ms.Rate = cfg.rate
	c, resp, err := openStream(ctx, cfg.url, cfg.user, "", 10*time.Second, rcvbufControl(cfg.rcvbuf))
	if err != nil {
		fmt.Println("memory: the non-reading stream did not open:", err)
		return false
	}
	defer c.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Println("memory: the non-reading stream got status", resp.StatusCode)
		return false
	}
	fmt.Printf("a stream of user %d that never reads (receive buffer %d bytes); %d messages of %d bytes at %.0f/s\n",
		cfg.user, cfg.rcvbuf, cfg.count, cfg.size, cfg.rate)
	sleepCtx(ctx, cfg.settle)
	before := sampleProcs(cfg.pids)
	ms.RSSBeforeKiB = before.RSSKiB
	peak := startRSSPeak(cfg.pids, 50*time.Millisecond)
	drops0 := metricValue(cfg.metricsURL, metricSlowClient)

	var published atomic.Int64
	pubDone := make(chan error, 1)
	start := time.Now()
	go func() {
		var err error
		for i := range cfg.count {
			sleepCtx(ctx, time.Until(start.Add(time.Duration(float64(i)/cfg.rate*float64(time.Second)))))
			if err = ctx.Err(); err != nil {
				break
			}
			if err = send(ctx, rdb, cfg, bigMessage(cfg.user, uint64(i+1), time.Now().UnixNano(), cfg.size)); err != nil {
				break
			}
			published.Add(1)
		}
		pubDone <- err
	}()
	ms.ClosedAfterSec = -1
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	var pubErr error
wait:
	for {
		select {
		case pubErr = <-pubDone:
			break wait
		case <-poll.C:
			if ms.ClosedAfterSec < 0 && drops0 >= 0 {
				if v := metricValue(cfg.metricsURL, metricSlowClient); v > drops0 {
					ms.ClosedAfterSec = time.Since(start).Seconds()
					ms.ClosedAfterMsg = int(published.Load())
				}
			}
		}
	}
	ms.Published = int(published.Load())
	if pubErr != nil {
		fmt.Println("memory: publishing:", pubErr)
	}
	if ms.ClosedAfterSec < 0 && drops0 >= 0 {
		if v := metricValue(cfg.metricsURL, metricSlowClient); v > drops0 {
			ms.ClosedAfterSec = time.Since(start).Seconds()
			ms.ClosedAfterMsg = ms.Published
		}
	}
	sleepCtx(ctx, cfg.settle)
	ms.RSSAfterKiB = sampleProcs(cfg.pids).RSSKiB
	kib, at := peak.peak()
	ms.RSSPeakKiB, ms.PeakAtSecs = kib, at.Seconds()
	peak.close()

	// Now read what the server left for the client: a stream the server
	// closed ends (EOF or a reset); one still open times out.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	fr := newFrameReader(resp.Body, 0)
	for {
		f, err := fr.next()
		if err != nil {
			ms.Closed = !isTimeout(err)
			break
		}
		if f.isEvent() {
			ms.ClientEvents++
		}
	}
	ms.ClientBytes = fr.n
	return pubErr == nil && ms.Closed
}

// readEvents reads a stream's frames until it fails, calling fn for each.
func readEvents(body io.Reader, fn func(frame)) error {
	fr := newFrameReader(body, 128)
	for {
		f, err := fr.next()
		if err != nil {
			return err
		}
		fn(f)
	}
}

// memBig is -kind big.
func memBig(ctx context.Context, rdb *redis.Client, cfg *memConfig, ms *memorySummary) bool {
	c, resp, err := openStream(ctx, cfg.url, cfg.user, "", 10*time.Second, nil)
	if err != nil {
		fmt.Println("memory: the stream did not open:", err)
		return false
	}
	defer c.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Println("memory: the stream got status", resp.StatusCode)
		return false
	}
	got := make(chan time.Time, 1)
	go func() {
		_ = readEvents(resp.Body, func(f frame) {
			if _, seq, _, ok := parseMessage(f.data); ok && seq == 1 && f.dataLen == cfg.size {
				select {
				case got <- time.Now():
				default:
				}
			}
		})
	}()
	fmt.Printf("one message of %d bytes to a reading stream (expected: %s)\n", cfg.size,
		map[bool]string{true: "dropped as too_large", false: "delivered"}[cfg.expectDrop])
	sleepCtx(ctx, cfg.settle)
	ms.RSSBeforeKiB = sampleProcs(cfg.pids).RSSKiB
	peak := startRSSPeak(cfg.pids, 20*time.Millisecond)
	tooLarge0 := metricValue(cfg.metricsURL, metricTooLarge)
	msg := bigMessage(cfg.user, 1, time.Now().UnixNano(), cfg.size)
	start := time.Now()
	if err := send(ctx, rdb, cfg, msg); err != nil {
		fmt.Println("memory: publishing:", err)
		return false
	}
	dropped := false
	deadline := time.NewTimer(cfg.wait)
	defer deadline.Stop()
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
wait:
	for {
		select {
		case t := <-got:
			ms.Delivered, ms.DeliveryMs = true, msOf(t.Sub(start))
			break wait
		case <-poll.C:
			if cfg.expectDrop && tooLarge0 >= 0 && metricValue(cfg.metricsURL, metricTooLarge) > tooLarge0 {
				dropped = true
				break wait
			}
		case <-deadline.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	sleepCtx(ctx, cfg.settle)
	ms.RSSAfterKiB = sampleProcs(cfg.pids).RSSKiB
	kib, at := peak.peak()
	ms.RSSPeakKiB, ms.PeakAtSecs = kib, at.Seconds()
	peak.close()
	if cfg.expectDrop {
		return dropped && !ms.Delivered
	}
	return ms.Delivered
}

// resumeResult is what one resuming client saw.
type resumeResult struct {
	status   int
	reason   string // of the first reset event
	events   int
	bytes    int64
	complete time.Duration // to the last entry; 0 if it never came
	err      error
}

// memReplay is -kind replay.
func memReplay(ctx context.Context, rdb *redis.Client, cfg *memConfig, ms *memorySummary, snapMetrics func()) bool {
	ms.Resumers = cfg.resumers
	sleepCtx(ctx, cfg.settle) // the server loads its window at start
	if len(cfg.pids) == 1 {
		ms.StartPeakKiB, _ = procStatusKiB(cfg.pids[0], "VmHWM")
	}
	ms.StartRSSKiB = sampleProcs(cfg.pids).RSSKiB
	fmt.Printf("server at start over %d entries of %d bytes: RSS %.1f MiB, peak %.1f MiB\n",
		cfg.count, cfg.size, kib2mib(ms.StartRSSKiB), kib2mib(ms.StartPeakKiB))

	// The live client and its publisher.
	liveUser := cfg.user + 1
	lc, lresp, err := openStream(ctx, cfg.url, liveUser, "", 10*time.Second, nil)
	if err != nil || lresp.StatusCode != http.StatusOK {
		fmt.Println("memory: the live stream did not open:", err, lresp != nil && lresp.StatusCode != 200)
		if lc != nil {
			lc.Close()
		}
		return false
	}
	defer lc.Close()
	var live hist
	var liveGot atomic.Int64
	go func() {
		_ = readEvents(lresp.Body, func(f frame) {
			if _, _, ts, ok := parseMessage(f.data); ok && f.isEvent() {
				live.record(time.Since(time.Unix(0, ts)))
				liveGot.Add(1)
			}
		})
	}()
	lctx, lcancel := context.WithCancel(ctx)
	var livePub atomic.Int64
	liveDone := make(chan struct{})
	go func() {
		defer close(liveDone)
		start := time.Now()
		for i := 0; lctx.Err() == nil; i++ {
			sleepCtx(lctx, time.Until(start.Add(time.Duration(float64(i)/cfg.liveRate*float64(time.Second)))))
			if lctx.Err() != nil {
				return
			}
			msg := appendMessage(nil, liveUser, uint64(i+1), time.Now().UnixNano(), 0)
			if rdb.XAdd(ctx, &redis.XAddArgs{Stream: cfg.stream, Values: []any{"data", msg}}).Err() == nil {
				livePub.Add(1)
			}
		}
	}()
	sleepCtx(ctx, time.Second)

	// The resumers, all at once.
	snapMetrics()
	ms.RSSBeforeKiB = sampleProcs(cfg.pids).RSSKiB
	peak := startRSSPeak(cfg.pids, 20*time.Millisecond)
	results := make([]resumeResult, cfg.resumers)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	start := time.Now()
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			results[i] = resume(ctx, cfg, start)
		}()
	}
	close(gate)
	wg.Wait()
	sleepCtx(ctx, 2*time.Second) // live delivery after the replays
	lcancel()
	<-liveDone
	sleepCtx(ctx, 500*time.Millisecond)
	ms.RSSAfterKiB = sampleProcs(cfg.pids).RSSKiB
	kib, at := peak.peak()
	ms.RSSPeakKiB, ms.PeakAtSecs = kib, at.Seconds()
	peak.close()

	ms.Statuses, ms.ResetReasons = map[string]int{}, map[string]int{}
	var errs errCounts
	var replayed int64
	for _, r := range results {
		if r.err != nil {
			errs.add(r.err)
		}
		if r.status > 0 {
			ms.Statuses[strconv.Itoa(r.status)]++
		}
		if r.reason != "" {
			ms.ResetReasons[r.reason]++
		}
		if r.complete > 0 {
			ms.Complete++
			ms.CompleteSecs = max(ms.CompleteSecs, r.complete.Seconds())
		}
		ms.ReplayedEvents += r.events
		replayed += r.bytes
	}
	ms.ReplayedMiB = float64(replayed) / (1 << 20)
	ms.Errors = errs.snapshot()
	ms.LiveExpected, ms.LiveReceived = int(livePub.Load()), int(liveGot.Load())
	ms.LiveP50ms, ms.LiveMaxms = msOf(live.quantile(0.5)), msOf(time.Duration(live.max.Load()))
	return ms.Complete == cfg.resumers && ms.Statuses["200"] == cfg.resumers && ms.LiveReceived == ms.LiveExpected
}

// resume is one client resuming from cfg.lastEventID: it reads until the
// last entry of the fill (seq cfg.count) arrives, the stream fails or
// cfg.wait passes.
func resume(ctx context.Context, cfg *memConfig, start time.Time) resumeResult {
	var r resumeResult
	c, resp, err := openStream(ctx, cfg.url, cfg.user, cfg.lastEventID, cfg.wait, nil)
	if err != nil {
		r.err = err
		return r
	}
	defer c.Close()
	r.status = resp.StatusCode
	if r.status != http.StatusOK {
		return r
	}
	_ = c.SetReadDeadline(start.Add(cfg.wait))
	err = readEvents(resp.Body, func(f frame) {
		if !f.isEvent() {
			return
		}
		if f.event == "reset" {
			if r.reason == "" {
				var v struct {
					Reason string `json:"reason"`
				}
				_ = json.Unmarshal(f.data, &v)
				r.reason = v.Reason
				if r.reason == "" {
					r.reason = "?"
				}
			}
			return
		}
		r.events++
		r.bytes += int64(f.dataLen)
		if _, seq, _, ok := parseMessage(f.data); ok && seq == uint64(cfg.count) {
			r.complete = time.Since(start)
			_ = c.Close() // ends readEvents
		}
	})
	if r.complete == 0 {
		r.err = fmt.Errorf("after %d events: %w", r.events, err)
	}
	return r
}

// report is the human-readable part of the memory workload's output.
func (ms *memorySummary) report() string {
	when := "" // a peak from VmHWM has no time
	if ms.PeakAtSecs > 0 {
		when = fmt.Sprintf(", %.1fs in", ms.PeakAtSecs)
	}
	out := fmt.Sprintf("server RSS: %.1f MiB before, peak %.1f MiB (+%.1f MiB%s), %.1f MiB after",
		kib2mib(ms.RSSBeforeKiB), kib2mib(ms.RSSPeakKiB), kib2mib(ms.RSSPeakKiB-ms.RSSBeforeKiB), when, kib2mib(ms.RSSAfterKiB))
	switch ms.Kind {
	case "slow":
		out += fmt.Sprintf("\npublished %d of %d messages at %.0f/s", ms.Published, ms.Messages, ms.Rate)
		if ms.ClosedAfterSec >= 0 {
			out += fmt.Sprintf("\nslow_client drop %.1fs after publishing started (%d messages published by then)", ms.ClosedAfterSec, ms.ClosedAfterMsg)
		} else {
			out += "\nno slow_client drop seen"
		}
		out += fmt.Sprintf("\nthe stream was %s; its client then read %d bytes (%d events)",
			map[bool]string{true: "closed by the server", false: "STILL OPEN"}[ms.Closed], ms.ClientBytes, ms.ClientEvents)
	case "big":
		switch {
		case ms.Delivered:
			out += fmt.Sprintf("\ndelivered in %.0f ms", ms.DeliveryMs)
		case ms.ExpectDrop:
			out += "\nnot delivered (expected: dropped as too_large)"
		default:
			out += "\nNOT DELIVERED"
		}
	case "replay":
		out += fmt.Sprintf("\nat start: RSS %.1f MiB, peak %.1f MiB", kib2mib(ms.StartRSSKiB), kib2mib(ms.StartPeakKiB))
		out += fmt.Sprintf("\n%d resumers: statuses %v, resets %v, %d complete in %.2fs (%d events, %.1f MiB replayed in all)",
			ms.Resumers, ms.Statuses, ms.ResetReasons, ms.Complete, ms.CompleteSecs, ms.ReplayedEvents, ms.ReplayedMiB)
		for _, k := range sortedKeys(ms.Errors) {
			out += fmt.Sprintf("\n  resumer error x%d: %s", ms.Errors[k], k)
		}
		out += fmt.Sprintf("\nlive client meanwhile: %d / %d events, latency p50 %.1fms max %.1fms",
			ms.LiveReceived, ms.LiveExpected, ms.LiveP50ms, ms.LiveMaxms)
	}
	return out
}
