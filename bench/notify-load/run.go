package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// authMain runs the auth API as its own process until a signal or the
// deadline.
func authMain(args []string) int {
	fs := flag.NewFlagSet("auth", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address of the auth API")
	deadline := fs.Duration("deadline", time.Hour, "exit after this long")
	unknownDelay := fs.Duration("unknown-delay", 0, "answer tokens other than u<N> (401) after this long, as an API looking them up would")
	groups := fs.String("groups", "", "comma-separated groups every user is in, answered as \"groups\": [...] (the auth URL's query groups=... overrides it)")
	groupMod := fs.Int("group-mod", 0, "with k > 0, user N is also in group g<N mod k> (the auth URL's query group_mod=k overrides it)")
	_ = fs.Parse(args)
	if *groupMod < 0 {
		fmt.Fprintln(os.Stderr, "auth: -group-mod must not be negative")
		return 2
	}
	raiseNofile()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, *deadline)
	defer cancel2()
	a := &authAPI{unknownDelay: *unknownDelay, groups: splitList(*groups), groupMod: *groupMod}
	addr, err := startAuth(ctx, *listen, a)
	if err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		return 1
	}
	fmt.Printf("auth API on http://%s/ (GET /stats for the counts; unknown tokens refused after %s)\n", addr, *unknownDelay)
	<-ctx.Done()
	fmt.Printf("auth API: %d calls, %d refused, %d connections\n", a.calls.Load(), a.refused.Load(), a.conns.Load())
	return 0
}

type runConfig struct {
	url, proto          string
	streams, users      int
	perConn             int
	procs, maxPerProc   int
	srcIPs              int
	connectTimeout      time.Duration
	concurrency         int
	settle, idle        time.Duration
	drain, deadline     time.Duration
	pub                 pubConfig
	serverPids          string
	serverPidsFile      string
	serverTree          bool // the server's CPU and memory include its pids' children (sampleTree)
	redisPid, auxPids   string
	authListen, authURL string
	label               string
	reconnectAt         time.Duration
	metricsURL          string
	reconnect           bool          // streams reconnect as EventSource does (eventsource.go)
	retry               time.Duration // their delay when the server sends no retry field
	reload              reloadConfig  // reload.go
	fan                 int           // fan-out to this many groups (fan.go)
	fanBy               string
}

// child is one worker process seen from the parent.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	ready readyMsg
	res   resultMsg
	err   error
}

func (c *child) readLine(v any) error {
	line, err := c.out.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("worker %d: %w", c.cmd.Process.Pid, err)
	}
	return json.Unmarshal(line, v)
}

// summary is the final JSON line.
type summary struct {
	Label            string  `json:"label,omitempty"`
	URL              string  `json:"url"`
	Proto            string  `json:"proto"`
	Procs            int     `json:"procs"`
	Conns            int     `json:"conns"`
	StreamsRequested int     `json:"streams_requested"`
	Streams          int     `json:"streams_established"`
	StreamsFailed    int     `json:"streams_failed"`
	ClosedEarly      uint64  `json:"streams_closed_early"`
	Users            int     `json:"users"`
	ConnectSecs      float64 `json:"connect_secs"`
	ConnectsPerSec   float64 `json:"connects_per_sec"`
	AuthCalls        int64   `json:"auth_calls"` // during the connect phase; -1 unknown
	AuthCallsTotal   int64   `json:"auth_calls_total"`
	Mode             string  `json:"mode"`
	Rate             float64 `json:"rate"`
	Published        int     `json:"events_published"`
	PublishErrors    uint64  `json:"publish_errors"`
	PublisherBehind  bool    `json:"publisher_behind"`
	PublishSecs      float64 `json:"publish_secs"`
	Publish          string  `json:"publish"`           // redis or http
	PublishedPerSec  float64 `json:"published_per_sec"` // events published without error, per second of publishing
	Expected         uint64  `json:"deliveries_expected"`
	Received         uint64  `json:"deliveries_received"`
	Lost             int64   `json:"lost"`
	Duplicated       uint64  `json:"duplicated"`
	Misrouted        uint64  `json:"misrouted"`
	OutOfOrder       uint64  `json:"out_of_order"`
	Unparsed         uint64  `json:"unparsed"`
	Heartbeats       uint64  `json:"heartbeats"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	P50ms            float64 `json:"p50_ms"`
	P90ms            float64 `json:"p90_ms"`
	P99ms            float64 `json:"p99_ms"`
	Maxms            float64 `json:"max_ms"`

	Server           [3]procSample `json:"server"` // before connect, connected, after publish
	IdleKiBPerStream float64       `json:"idle_kib_per_stream"`
	IdlePSSPerStream float64       `json:"idle_pss_kib_per_stream"`
	CPUConnectSecs   float64       `json:"cpu_connect_secs"`
	CPUPublishSecs   float64       `json:"cpu_publish_secs"`
	CPUPer1000Deliv  float64       `json:"cpu_s_per_1000_deliveries"`
	CPUPer1000Msgs   float64       `json:"cpu_s_per_1000_messages"`
	RedisCPUSecs     float64       `json:"redis_cpu_publish_secs"`
	// Commands Redis processed per second while publishing, besides the
	// publisher's: the servers' (presence, replays...); -1 unknown.
	RedisOtherCmdsPerSec float64 `json:"redis_other_cmds_per_sec"`
	AuxCPUSecs           float64 `json:"aux_cpu_publish_secs"`
	AuxCPUPer1000        float64 `json:"aux_cpu_s_per_1000_messages"` // the publishing server's CPU per 1,000 events published
	ToolCPUSecs          float64 `json:"tool_cpu_secs"`               // the load tool's own CPU: parent and workers, whole run

	// The reconnect storm (-reconnect-at) and the server's metrics.
	ReconnectAtSecs    float64            `json:"reconnect_at_secs,omitempty"`
	Reconnects         uint64             `json:"reconnects"`
	ReconnectsWithID   uint64             `json:"reconnects_with_id"`
	ReconnectsFailed   uint64             `json:"reconnects_failed"`
	ReconnectSecs      float64            `json:"reconnect_secs"` // first close → last stream re-established
	ReconnectsPerSec   float64            `json:"reconnects_per_sec"`
	CPUStormSecs       float64            `json:"cpu_storm_secs"`        // server CPU over ReconnectSecs; -1 unknown
	CPUBeforeStormSecs float64            `json:"cpu_before_storm_secs"` // server CPU over as long just before the storm; -1 unknown
	Resets             uint64             `json:"resets"`
	GapStreams         uint64             `json:"gap_streams"`  // streams that reconnected without Last-Event-ID, with a gap
	GapEvents          uint64             `json:"gap_events"`   // events published in those gaps: not in deliveries_expected
	GapReceived        uint64             `json:"gap_received"` // of those, received all the same (not in deliveries_received)
	CatchUp            uint64             `json:"catch_up"`     // events published before their stream reconnected, received after (the replay); in the latency above too
	CatchP50ms         float64            `json:"catch_p50_ms"`
	CatchP99ms         float64            `json:"catch_p99_ms"`
	CatchMaxms         float64            `json:"catch_max_ms"`
	MetricsDelta       map[string]float64 `json:"metrics_delta,omitempty"` // caddy_notify_*_total, publishing start → end of drain

	// Fan-out (-fan): groups, how messages are addressed (group or list)
	// and the size of one message.
	Fan          int    `json:"fan,omitempty"`
	FanBy        string `json:"fan_by,omitempty"`
	MessageBytes int    `json:"message_bytes,omitempty"`

	// The reload workload (-reload-at).
	Reload *reloadSummary `json:"reload,omitempty"`

	// The attack and memory workloads (notify-load attack, notify-load memory).
	Attack *attackSummary `json:"attack,omitempty"`
	Memory *memorySummary `json:"memory,omitempty"`

	OK bool `json:"ok"`
}

func runMain(args []string) int {
	var cfg runConfig
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	fs.StringVar(&cfg.url, "url", "http://127.0.0.1:8080/events", "stream URL; {user} is replaced by the stream's user id (nchan); h1: several servers, comma-separated, stream i on the (i mod n)th")
	fs.StringVar(&cfg.proto, "proto", "h1", "h1 (one connection per stream) or h2 (-streams-per-conn per connection; h2c prior knowledge, or over TLS for an https -url); https: TLS, the certificate unchecked")
	fs.IntVar(&cfg.streams, "streams", 1000, "streams to open (N)")
	fs.IntVar(&cfg.users, "users", 0, "users the streams are spread over (U, default N); stream i is user i mod U, token u<i mod U>")
	fs.IntVar(&cfg.perConn, "streams-per-conn", 250, "h2: streams multiplexed per connection (M)")
	fs.IntVar(&cfg.procs, "procs", 0, "worker processes (0: one per -max-conns-per-proc connections)")
	fs.IntVar(&cfg.maxPerProc, "max-conns-per-proc", 18000, "connections per worker process when -procs is 0")
	fs.IntVar(&cfg.srcIPs, "src-ips", 0, "spread connections over source addresses 127.0.0.1..127.0.0.<n> (0: one per 20,000 connections)")
	fs.DurationVar(&cfg.connectTimeout, "connect-timeout", 15*time.Second, "longest time for one stream to get its 200")
	fs.IntVar(&cfg.concurrency, "connect-concurrency", 256, "streams connecting at once, per worker process")
	fs.DurationVar(&cfg.settle, "settle", time.Second, "wait after the streams are open, before measuring memory and publishing")
	fs.DurationVar(&cfg.idle, "idle", 0, "hold the streams idle this long before publishing (memory is sampled after it)")
	fs.DurationVar(&cfg.drain, "drain", 10*time.Second, "longest wait for outstanding deliveries after publishing")
	fs.DurationVar(&cfg.deadline, "deadline", 10*time.Minute, "the whole run ends by then, whatever happens")
	fs.StringVar(&cfg.pub.mode, "mode", "pubsub", "publishing: pubsub (PUBLISH), stream (XADD <stream> * data <json>), nchan (HTTP POST to -pub-url)")
	fs.StringVar(&cfg.pub.redis, "redis", "127.0.0.1:6379", "Redis host:port (with -cluster, seed nodes, comma-separated)")
	fs.BoolVar(&cfg.pub.cluster, "cluster", false, "-redis is a Redis Cluster")
	fs.IntVar(&cfg.pub.partitions, "partitions", 1, "the handler's partitions: each event goes to <channel or stream>.<crc32(user) mod n>")
	fs.BoolVar(&cfg.pub.sharded, "sharded", false, "publish with SPUBLISH (the handler's sharded)")
	fs.BoolVar(&cfg.pub.foreign, "foreign", false, "address every event to a user with no stream: the server reads it and delivers it to nobody")
	fs.StringVar(&cfg.pub.channel, "channel", "notifications", "pub/sub channel")
	fs.StringVar(&cfg.pub.stream, "stream", "notifications", "stream key (-mode stream)")
	fs.StringVar(&cfg.pub.via, "publish", "redis", "how events reach Redis (-mode pubsub or stream): redis (the tool sends PUBLISH or XADD) or http (POST to -pub-url: notify_publish); -mode nchan is always http")
	fs.StringVar(&cfg.pub.pubURL, "pub-url", "", "-publish http and -mode nchan: publisher URL, {user} is the recipient")
	fs.IntVar(&cfg.pub.workers, "pub-workers", 8, "-publish http and -mode nchan: concurrent publish requests")
	fs.IntVar(&cfg.pub.batch, "pub-batch", 1, "-publish http: events per POST, as a JSON array when more than 1 (notify_publish); nchan takes one per POST")
	fs.Float64Var(&cfg.pub.rate, "rate", 0, "events per second (R); 0 only connects")
	fs.DurationVar(&cfg.pub.duration, "duration", 20*time.Second, "publishing time (D)")
	fs.IntVar(&cfg.pub.pad, "pad", 0, "extra bytes of payload per message")
	fs.StringVar(&cfg.serverPids, "server-pids", "", "comma-separated pids whose CPU and RSS are the server's (summed)")
	fs.StringVar(&cfg.serverPidsFile, "server-pids-file", "", "file holding -server-pids, read at start")
	fs.BoolVar(&cfg.serverTree, "server-tree", false, "-server-pids are parents (an nginx master): their children count, those a reload replaced included")
	fs.StringVar(&cfg.redisPid, "redis-pid", "", "redis-server pid, for its CPU while publishing")
	fs.StringVar(&cfg.auxPids, "aux-pids", "", "other pids whose CPU while publishing is reported (e.g. nchan's publishing nginx)")
	fs.StringVar(&cfg.authListen, "auth-listen", "", "also serve the auth API on this address, in this process")
	fs.StringVar(&cfg.authURL, "auth-stats", "", "GET this URL for the call count of an auth API run as `notify-load auth`")
	fs.StringVar(&cfg.label, "label", "", "name of the run in the summary")
	fs.DurationVar(&cfg.reconnectAt, "reconnect-at", 0, "reconnect storm (h1, for -mode stream): this long after publishing starts every stream closes its connection and reconnects at once with Last-Event-ID (0: off)")
	fs.StringVar(&cfg.metricsURL, "metrics-url", "", "Prometheus endpoint of the server: deltas of its caddy_notify_*_total counters over publishing are reported")
	fs.BoolVar(&cfg.reconnect, "reconnect", false, "a stream that ends reconnects as an EventSource does: after the retry field's delay (-retry without one), with Last-Event-ID when it received an id (implied by -reload-at)")
	fs.DurationVar(&cfg.retry, "retry", 3*time.Second, "-reconnect: a stream's delay when the server sent no retry field")
	fs.DurationVar(&cfg.reload.at, "reload-at", 0, "reload the server this long after publishing starts (reload.go; needs -reload-admin or -reload-cmd)")
	fs.StringVar(&cfg.reload.admin, "reload-admin", "", "Caddy's admin API (http://host:port): GET /config/, POST it back to /load with Cache-Control: must-revalidate")
	fs.StringVar(&cfg.reload.cmd, "reload-cmd", "", "reload with this command (sh -c), e.g. nginx -c <conf> -s reload")
	fs.StringVar(&cfg.reload.change, "reload-change", "", "a changed reload: the new channel (stream, in stream mode) that -reload-admin gives every notify handler; the publisher follows once the reload is done")
	fs.StringVar(&cfg.reload.pubURL, "reload-pub-url", "", "-reload-change with HTTP publishing (nchan): the publisher URL afterwards, {user} replaced")
	fs.DurationVar(&cfg.reload.drain, "reload-drain", 0, "the server's drain window (reload_drain): how long it may take to end the streams of a reload")
	fs.DurationVar(&cfg.reload.window, "reload-window", 0, "the reload window after -reload-at, for the probes and the auth API (0: the drain window + -retry + 2s)")
	fs.DurationVar(&cfg.reload.timeout, "reload-timeout", 30*time.Second, "the longest reload request or command")
	fs.DurationVar(&cfg.reload.interval, "probe-interval", 100*time.Millisecond, "-reload-at: a new user opens a stream this often (0: no probes)")
	fs.StringVar(&cfg.reload.probeSrc, "probe-src", "127.0.0.2", "-reload-at: the probes' source address")
	fs.IntVar(&cfg.fan, "fan", 0, "fan-out: event m goes to every user of group m mod k (user u is in group u mod k; the auth API's -group-mod k) instead of one user (0: off)")
	fs.StringVar(&cfg.fanBy, "fan-by", "group", "-fan: address messages by group ({\"groups\":\"g<j>\"}) or list (recipient_id: an array of the group's users)")
	_ = fs.Parse(args)
	if cfg.users <= 0 {
		cfg.users = cfg.streams
	}
	cfg.pub.users = cfg.users
	if cfg.pub.batch < 1 || cfg.pub.batch > 1 && cfg.pub.mode == "nchan" {
		fmt.Fprintln(os.Stderr, "run: -pub-batch must be positive, and 1 for -mode nchan")
		return 2
	}
	if cfg.streams < 1 || cfg.perConn < 1 || cfg.concurrency < 1 || cfg.maxPerProc < 1 {
		fmt.Fprintln(os.Stderr, "run: -streams, -streams-per-conn, -connect-concurrency and -max-conns-per-proc must be positive")
		return 2
	}
	if cfg.proto != "h1" && cfg.proto != "h2" {
		fmt.Fprintln(os.Stderr, "run: -proto must be h1 or h2")
		return 2
	}
	if cfg.reconnectAt < 0 || cfg.reconnectAt > 0 && (cfg.proto != "h1" || cfg.pub.rate <= 0 || cfg.reconnectAt >= cfg.pub.duration) {
		fmt.Fprintln(os.Stderr, "run: -reconnect-at needs -proto h1, a -rate, and a time within -duration")
		return 2
	}
	if cfg.retry <= 0 {
		fmt.Fprintln(os.Stderr, "run: -retry must be positive")
		return 2
	}
	if err := cfg.reload.check(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 2
	}
	if cfg.reload.at > 0 {
		cfg.reconnect = true
	}
	if cfg.reconnect && cfg.reconnectAt > 0 {
		fmt.Fprintln(os.Stderr, "run: -reconnect (or -reload-at) and -reconnect-at are two ways of reconnecting: choose one")
		return 2
	}
	if cfg.fan != 0 {
		if cfg.fan < 0 || cfg.pub.mode == "nchan" || cfg.pub.partitions > 1 || cfg.pub.foreign {
			fmt.Fprintln(os.Stderr, "run: -fan needs a positive count, -mode pubsub or stream, one partition and no -foreign")
			return 2
		}
		f, err := newFanout(cfg.fanBy, cfg.fan, cfg.users)
		if err != nil {
			fmt.Fprintln(os.Stderr, "run:", err)
			return 2
		}
		cfg.pub.fan = f
	}
	cfg.pub.switched = new(atomic.Bool)
	cfg.pub.newName, cfg.pub.newPubURL = cfg.reload.change, cfg.reload.pubURL
	raiseNofile()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.deadline)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Whatever happens, the process ends at the deadline (plus a little
	// for the report).
	exitTimer := time.AfterFunc(cfg.deadline+5*time.Second, func() {
		fmt.Fprintln(os.Stderr, "run: deadline passed; exiting")
		os.Exit(3)
	})
	defer exitTimer.Stop() // runMain may return to a caller that goes on (the tests)

	var authLocal *authAPI
	if cfg.authListen != "" {
		a := &authAPI{}
		addr, err := startAuth(ctx, cfg.authListen, a)
		if err != nil {
			fmt.Fprintln(os.Stderr, "run: auth API:", err)
			return 1
		}
		authLocal = a
		fmt.Printf("auth API on http://%s/\n", addr)
	}
	authCount := func() int64 {
		if authLocal != nil {
			return int64(authLocal.calls.Load())
		}
		if cfg.authURL != "" {
			if n, ok := authCalls(cfg.authURL); ok {
				return int64(n)
			}
		}
		return -1
	}
	if cfg.serverPidsFile != "" {
		b, err := os.ReadFile(cfg.serverPidsFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "run:", err)
			return 1
		}
		cfg.serverPids = strings.Join(strings.Fields(string(b)), ",")
	}
	serverPids, err1 := parsePids(cfg.serverPids)
	redisPids, err2 := parsePids(cfg.redisPid)
	auxPids, err3 := parsePids(cfg.auxPids)
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			fmt.Fprintln(os.Stderr, "run:", err)
			return 2
		}
	}

	// Split the streams over worker processes.
	conns := cfg.streams
	if cfg.proto == "h2" {
		conns = (cfg.streams + cfg.perConn - 1) / cfg.perConn
	}
	procs := cfg.procs
	if procs <= 0 {
		procs = (conns + cfg.maxPerProc - 1) / cfg.maxPerProc
	}
	procs = min(procs, conns)
	srcIPs := cfg.srcIPs
	if srcIPs <= 0 {
		srcIPs = (conns + 19999) / 20000
	}
	sampleServer := sampleProcs
	if cfg.serverTree {
		sampleServer = sampleTree
	}
	s := summary{Label: cfg.label, URL: cfg.url, Proto: cfg.proto, Procs: procs, StreamsRequested: cfg.streams,
		Users: cfg.users, Mode: cfg.pub.mode, Rate: cfg.pub.rate}
	fmt.Printf("notify-load: %d %s streams over %d users, %d connections, %d worker processes, %d source addresses\n",
		cfg.streams, cfg.proto, cfg.users, conns, procs, srcIPs)

	s.Server[0] = sampleServer(serverPids)
	authBefore := authCount()
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	// A stream reads a message of up to 1 KiB with one system call; a
	// bigger one (a fan-out message listing its users) with a few, up to
	// 64 KiB at a time.
	readBuf := 1024
	if cfg.pub.fan != nil {
		readBuf = min(max(len(cfg.pub.message(nil, 0, time.Now().UnixNano()))+512, 1024), 64<<10)
	}
	children := make([]*child, procs)
	connFirst := 0
	for p := range procs {
		// Whole connections per process: for h2, split on perConn.
		cFirst, cEnd := p*conns/procs, (p+1)*conns/procs
		first, end := cFirst, cEnd
		if cfg.proto == "h2" {
			first, end = cFirst*cfg.perConn, min(cfg.streams, cEnd*cfg.perConn)
		}
		connFirst = cFirst
		cmd := exec.Command(exe, "worker",
			"-url", cfg.url, "-proto", cfg.proto,
			"-first", strconv.Itoa(first), "-count", strconv.Itoa(end-first),
			"-users", strconv.Itoa(cfg.users), "-per-conn", strconv.Itoa(cfg.perConn),
			"-conn-base", strconv.Itoa(connFirst), "-src-ips", strconv.Itoa(srcIPs),
			"-connect-timeout", cfg.connectTimeout.String(),
			"-concurrency", strconv.Itoa(cfg.concurrency),
			"-deadline", (cfg.deadline + 2*time.Second).String(),
			"-reconnect-at", cfg.reconnectAt.String(),
			"-rate", strconv.FormatFloat(cfg.pub.rate, 'g', -1, 64),
			"-reconnect="+strconv.FormatBool(cfg.reconnect), "-retry", cfg.retry.String(),
			"-fan", strconv.Itoa(cfg.fan), "-read-buffer", strconv.Itoa(readBuf))
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			fmt.Fprintln(os.Stderr, "run:", err)
			return 1
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			fmt.Fprintln(os.Stderr, "run:", err)
			return 1
		}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "run: starting worker:", err)
			return 1
		}
		children[p] = &child{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 1<<16)}
	}
	defer func() {
		for _, c := range children {
			_ = c.in.Close()
			done := make(chan struct{})
			go func() { _ = c.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = c.cmd.Process.Kill()
			}
		}
	}()

	// Connect phase.
	eachChild(children, func(c *child) error { return c.readLine(&c.ready) })
	connectErrs := map[string]int{}
	var firstDial, lastOK int64
	for _, c := range children {
		if c.err != nil {
			fmt.Fprintln(os.Stderr, "run:", c.err)
			return 1
		}
		s.Streams += c.ready.Established
		s.StreamsFailed += c.ready.Failed
		s.Conns += c.ready.Conns
		for k, v := range c.ready.Errors {
			connectErrs[k] += v
		}
		if c.ready.FirstDialNs > 0 && (firstDial == 0 || c.ready.FirstDialNs < firstDial) {
			firstDial = c.ready.FirstDialNs
		}
		lastOK = max(lastOK, c.ready.LastOKNs)
	}
	if lastOK > firstDial && s.Streams > 0 {
		s.ConnectSecs = float64(lastOK-firstDial) / 1e9
		s.ConnectsPerSec = float64(s.Streams) / s.ConnectSecs
	}
	fmt.Printf("connected: %d established, %d failed in %.2fs (%.0f connects/s)\n",
		s.Streams, s.StreamsFailed, s.ConnectSecs, s.ConnectsPerSec)
	for _, k := range sortedKeys(connectErrs) {
		fmt.Printf("  connect error x%d: %s\n", connectErrs[k], k)
	}
	sleepCtx(ctx, cfg.settle+cfg.idle)
	s.Server[1] = sampleServer(serverPids)
	s.AuthCalls = -1
	if a := authCount(); a >= 0 && authBefore >= 0 {
		s.AuthCalls = a - authBefore
	}
	redis1, aux1 := sampleProcs(redisPids), sampleProcs(auxPids)
	cmds1, cmdsOK1 := redisCommands(ctx, cfg.pub)

	// Publish phase.
	var pres pubResult
	cmdLine := "stop\n"
	var metricsBefore map[string]float64
	if cfg.metricsURL != "" {
		m, err := fetchMetrics(cfg.metricsURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "run: metrics:", err)
		}
		metricsBefore = m
	}
	var trace cpuTrace
	traceCtx, stopTrace := context.WithCancel(ctx)
	defer stopTrace()
	if cfg.reconnectAt > 0 && len(serverPids) > 0 && !cfg.serverTree {
		go trace.run(traceCtx, serverPids, 50*time.Millisecond)
	}
	pubStart := time.Now()
	var rr *reloadRun
	if cfg.reload.at > 0 && s.Streams > 0 {
		rr = &reloadRun{rc: cfg.reload, switched: cfg.pub.switched, authStats: func(reset bool) (authStats, bool) {
			if authLocal != nil {
				if reset {
					authLocal.inflight.resetPeak()
					authLocal.open.resetPeak()
				}
				return authLocal.stats(), true
			}
			if cfg.authURL == "" {
				return authStats{}, false
			}
			st, err := fetchAuthStats(cfg.authURL, reset)
			if err != nil {
				fmt.Fprintln(os.Stderr, "run: auth stats:", err)
			}
			return st, err == nil
		}, newProber: func() *prober {
			// A new user each time, none of the streams' users.
			return &prober{url: strings.Split(cfg.url, ",")[0], user: cfg.users + 1000, spread: 1 << 20, proto: cfg.proto,
				src: cfg.reload.probeSrc, interval: cfg.reload.interval, timeout: 10 * time.Second, firstFrame: true, maxInflight: 64}
		}}
		rr.start(ctx, pubStart, pubStart.Add(cfg.pub.duration))
	}
	if cfg.pub.rate > 0 && cfg.pub.duration > 0 && s.Streams > 0 {
		fmt.Printf("publishing %g events/s for %s (%s)\n", cfg.pub.rate, cfg.pub.duration, cfg.pub.mode)
		if cfg.reconnectAt > 0 {
			fmt.Printf("reconnect storm at %s\n", cfg.reconnectAt)
		}
		if rr != nil {
			fmt.Printf("reload (%s) at %s, reload window %s\n", cfg.reload.kind(), cfg.reload.at, cfg.reload.window)
		}
		startLine := fmt.Sprintf("start %d\n", pubStart.UnixNano())
		for _, c := range children {
			_, _ = io.WriteString(c.in, startLine)
		}
		var err error
		pres, err = publish(ctx, cfg.pub)
		if err != nil {
			fmt.Fprintln(os.Stderr, "run: publish:", err)
		}
		drain := cfg.drain
		if dl, ok := ctx.Deadline(); ok {
			drain = min(drain, time.Until(dl))
		}
		expected := pres.Attempted
		if cfg.pub.foreign {
			expected = 0 // nothing is for the streams
		}
		cmdLine = fmt.Sprintf("drain %d %d\n", expected, drain.Milliseconds())
		if rr != nil {
			cmdLine = fmt.Sprintf("drain %d %d %d\n", expected, drain.Milliseconds(), rr.baseNs(pubStart))
		}
	}
	for _, c := range children {
		_, _ = io.WriteString(c.in, cmdLine)
	}
	eachChild(children, func(c *child) error { return c.readLine(&c.res) })
	stopTrace()
	if metricsBefore != nil {
		if m, err := fetchMetrics(cfg.metricsURL); err != nil {
			fmt.Fprintln(os.Stderr, "run: metrics:", err)
		} else {
			s.MetricsDelta = metricDeltas(metricsBefore, m)
		}
	}
	toolPids := []int{os.Getpid()}
	for _, c := range children {
		toolPids = append(toolPids, c.cmd.Process.Pid)
	}
	// A worker may exit right after its result: count what can be read.
	for _, p := range toolPids {
		if cpu, err := procCPU(p); err == nil {
			s.ToolCPUSecs += cpu
		}
	}
	s.Server[2] = sampleServer(serverPids)
	redis2, aux2 := sampleProcs(redisPids), sampleProcs(auxPids)
	cmds2, cmdsOK2 := redisCommands(ctx, cfg.pub)
	if a := authCount(); a >= 0 && authBefore >= 0 {
		s.AuthCallsTotal = a - authBefore
	} else {
		s.AuthCallsTotal = -1
	}

	// Aggregate.
	var h, hc hist
	closeErrs := map[string]int{}
	var lastEvent, stormStart, stormLastOK int64
	reconnErrs := map[string]int{}
	var perStream streamTotals
	for _, c := range children {
		if c.err != nil {
			fmt.Fprintln(os.Stderr, "run:", c.err)
			continue
		}
		r := c.res
		s.ClosedEarly += r.ClosedEarly
		s.Expected += r.Expected
		s.Received += r.Unique
		s.Duplicated += r.Dup
		s.OutOfOrder += r.OOO
		s.Misrouted += r.Misrouted
		s.Unparsed += r.Unparsed
		s.Heartbeats += r.Comments
		h.merge(r.Hist, r.MaxNs)
		hc.merge(r.HistCatch, r.MaxCatchNs)
		lastEvent = max(lastEvent, r.LastEventNs)
		for k, v := range r.CloseErrors {
			closeErrs[k] += v
		}
		s.Resets += r.Resets
		s.GapStreams += r.GapStreams
		s.GapEvents += r.GapEvents
		s.GapReceived += r.GapReceived
		s.Reconnects += r.Reconnects
		s.ReconnectsWithID += r.ReconnectsID
		s.ReconnectsFailed += r.ReconnectFailed
		for k, v := range r.ReconnectErrors {
			reconnErrs[k] += v
		}
		if r.StormStartNs > 0 && (stormStart == 0 || r.StormStartNs < stormStart) {
			stormStart = r.StormStartNs
		}
		stormLastOK = max(stormLastOK, r.StormLastOKNs)
		perStream.add(r.Streams)
	}
	if rr != nil {
		s.Reload = rr.finish(&perStream, cfg.retry, cfg.pub.rate, cfg.users, cfg.fan, closeErrs, reconnErrs)
	}
	if cfg.fan > 0 {
		s.Fan, s.FanBy = cfg.fan, cfg.fanBy
		s.MessageBytes = len(cfg.pub.message(nil, 0, time.Now().UnixNano()))
	}
	s.ReconnectAtSecs = cfg.reconnectAt.Seconds()
	s.CPUStormSecs, s.CPUBeforeStormSecs = -1, -1
	if stormLastOK > stormStart && stormStart > 0 {
		s.ReconnectSecs = float64(stormLastOK-stormStart) / 1e9
		s.ReconnectsPerSec = float64(s.Reconnects) / s.ReconnectSecs
		if cpu, ok := trace.between(stormStart, stormLastOK); ok {
			s.CPUStormSecs = cpu
		}
		if cpu, ok := trace.between(2*stormStart-stormLastOK, stormStart); ok {
			s.CPUBeforeStormSecs = cpu
		}
	}
	s.Published = pres.Attempted
	s.PublishErrors = pres.Errors
	s.PublisherBehind = pres.Behind
	s.PublishSecs = pres.Elapsed.Seconds()
	s.Publish = cfg.pub.via
	if cfg.pub.mode == "nchan" {
		s.Publish = "http"
	}
	if s.PublishSecs > 0 {
		s.PublishedPerSec = float64(uint64(s.Published)-s.PublishErrors) / s.PublishSecs
	}
	s.Lost = int64(s.Expected) - int64(s.Received)
	if lastEvent > pubStart.UnixNano() && s.Received > 0 {
		s.DeliveriesPerSec = float64(s.Received) / (float64(lastEvent-pubStart.UnixNano()) / 1e9)
	}
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	s.P50ms, s.P90ms, s.P99ms, s.Maxms = ms(h.quantile(0.50)), ms(h.quantile(0.90)), ms(h.quantile(0.99)), ms(time.Duration(h.max.Load()))
	s.CatchUp = hc.n.Load()
	s.CatchP50ms, s.CatchP99ms, s.CatchMaxms = ms(hc.quantile(0.50)), ms(hc.quantile(0.99)), ms(time.Duration(hc.max.Load()))
	if s.Server[0].OK && s.Server[1].OK && s.Streams > 0 {
		s.IdleKiBPerStream = float64(s.Server[1].RSSKiB-s.Server[0].RSSKiB) / float64(s.Streams)
		s.IdlePSSPerStream = float64(s.Server[1].PSSKiB-s.Server[0].PSSKiB) / float64(s.Streams)
		s.CPUConnectSecs = s.Server[1].CPUSecs - s.Server[0].CPUSecs
	}
	if s.Server[1].OK && s.Server[2].OK {
		s.CPUPublishSecs = s.Server[2].CPUSecs - s.Server[1].CPUSecs
		if s.Received > 0 {
			s.CPUPer1000Deliv = s.CPUPublishSecs / float64(s.Received) * 1000
		}
		if s.Published > 0 {
			s.CPUPer1000Msgs = s.CPUPublishSecs / float64(s.Published) * 1000
		}
	}
	if redis1.OK && redis2.OK {
		s.RedisCPUSecs = redis2.CPUSecs - redis1.CPUSecs
	}
	s.RedisOtherCmdsPerSec = -1
	if cmdsOK1 && cmdsOK2 && s.PublishSecs > 0 {
		// Besides the publisher's own commands (one per event, and the
		// INFO that measures): what the servers sent Redis meanwhile.
		s.RedisOtherCmdsPerSec = float64(cmds2-cmds1-int64(s.Published)-1) / s.PublishSecs
	}
	if aux1.OK && aux2.OK {
		s.AuxCPUSecs = aux2.CPUSecs - aux1.CPUSecs
		if s.Published > 0 {
			s.AuxCPUPer1000 = s.AuxCPUSecs / float64(s.Published) * 1000
		}
	}
	s.OK = s.StreamsFailed == 0 && s.ClosedEarly == 0 && s.Lost == 0 && s.Duplicated == 0 &&
		s.Misrouted == 0 && s.OutOfOrder == 0 && s.Unparsed == 0 && s.PublishErrors == 0 &&
		s.Resets == 0 && s.ReconnectsFailed == 0 && (cfg.reconnectAt == 0 || s.Reconnects == uint64(s.Streams))
	if s.Reload != nil {
		s.OK = reloadOK(&s, cfg.pub.mode == "stream")
	}

	// Report.
	if cfg.pub.rate > 0 {
		fmt.Printf("published (%s): %d events in %.2fs (%.0f/s without error), %d errors%s\n", s.Publish, s.Published, s.PublishSecs,
			s.PublishedPerSec, s.PublishErrors, map[bool]string{true: " (PUBLISHER BEHIND the rate)", false: ""}[s.PublisherBehind])
		fmt.Printf("deliveries: expected %d, received %d, lost %d, duplicated %d, misrouted %d, out-of-order %d, unparsed %d (%.0f/s)\n",
			s.Expected, s.Received, s.Lost, s.Duplicated, s.Misrouted, s.OutOfOrder, s.Unparsed, s.DeliveriesPerSec)
		fmt.Printf("latency: p50 %.3fms p90 %.3fms p99 %.3fms max %.3fms\n", s.P50ms, s.P90ms, s.P99ms, s.Maxms)
	}
	if cfg.reconnectAt > 0 {
		fmt.Printf("reconnect storm: %d reconnected (%d with Last-Event-ID), %d failed, of %d streams, in %.2fs (%.0f reconnects/s)\n",
			s.Reconnects, s.ReconnectsWithID, s.ReconnectsFailed, s.Streams, s.ReconnectSecs, s.ReconnectsPerSec)
		for _, k := range sortedKeys(reconnErrs) {
			fmt.Printf("  reconnect error x%d: %s\n", reconnErrs[k], k)
		}
		fmt.Printf("caught up after reconnecting (published before the stream was back; latency from publishing): %d events, p50 %.3fms p99 %.3fms max %.3fms\n",
			s.CatchUp, s.CatchP50ms, s.CatchP99ms, s.CatchMaxms)
		if s.CPUStormSecs >= 0 && s.ReconnectSecs > 0 {
			fmt.Printf("server CPU during the storm: %.2f cpu-s in %.2fs (%.2f cores; %.2f cpu-s in as long just before)\n",
				s.CPUStormSecs, s.ReconnectSecs, s.CPUStormSecs/s.ReconnectSecs, s.CPUBeforeStormSecs)
		}
	}
	if cfg.reconnectAt > 0 {
		fmt.Printf("unresumable gaps: %d streams reconnected without Last-Event-ID (no event before the storm); %d events published to them from %s before the storm to their reconnect are not expected (%d arrived all the same)\n",
			s.GapStreams, s.GapEvents, gapSlack, s.GapReceived)
	}
	if cfg.reconnectAt > 0 || s.Resets > 0 {
		fmt.Printf("reset events: %d\n", s.Resets)
	}
	if s.Reload != nil {
		fmt.Println(s.Reload.report())
	}
	if s.Fan > 0 {
		fmt.Printf("fan-out: %d groups, addressed by %s, %d bytes a message\n", s.Fan, s.FanBy, s.MessageBytes)
	}
	if len(s.MetricsDelta) > 0 {
		keys := make([]string, 0, len(s.MetricsDelta))
		for k := range s.MetricsDelta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Println("server metrics, change over publishing and drain:")
		for _, k := range keys {
			fmt.Printf("  %s %+.0f\n", k, s.MetricsDelta[k])
		}
	}
	if s.ClosedEarly > 0 && s.Reload == nil {
		fmt.Printf("streams closed early: %d\n", s.ClosedEarly)
		for _, k := range sortedKeys(closeErrs) {
			fmt.Printf("  close reason x%d: %s\n", closeErrs[k], k)
		}
	}
	if len(serverPids) > 0 {
		for i, name := range []string{"before connect", "connected", "after publish"} {
			fmt.Printf("server %-14s cpu %.2fs rss %d KiB pss %d KiB\n", name, s.Server[i].CPUSecs, s.Server[i].RSSKiB, s.Server[i].PSSKiB)
		}
		fmt.Printf("server: %.2f KiB RSS (%.2f KiB PSS) per idle stream, %.2f cpu-s connecting, %.2f cpu-s publishing (%.4f cpu-s per 1000 deliveries, %.4f per 1000 messages)\n",
			s.IdleKiBPerStream, s.IdlePSSPerStream, s.CPUConnectSecs, s.CPUPublishSecs, s.CPUPer1000Deliv, s.CPUPer1000Msgs)
	}
	if len(redisPids) > 0 || len(auxPids) > 0 {
		fmt.Printf("while publishing: redis %.2f cpu-s, %.1f commands/s besides the publisher's, aux %.2f cpu-s (%.4f per 1000 messages)\n",
			s.RedisCPUSecs, s.RedisOtherCmdsPerSec, s.AuxCPUSecs, s.AuxCPUPer1000)
	}
	fmt.Printf("auth API calls: %d while connecting, %d in all\n", s.AuthCalls, s.AuthCallsTotal)
	fmt.Printf("load tool CPU: %.2fs\n", s.ToolCPUSecs)
	fmt.Printf("result: %s\n", map[bool]string{true: "OK", false: "PROBLEMS (see above)"}[s.OK])
	b, _ := json.Marshal(s)
	fmt.Println(string(b))
	if !s.OK {
		return 1
	}
	return 0
}

// eachChild runs fn for every child at once and waits for all.
func eachChild(cs []*child, fn func(*child) error) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(c); err != nil && c.err == nil {
				c.err = err
			}
		}()
	}
	wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// redisCommands reads total_commands_processed from the single Redis the
// run publishes to (nothing for a cluster or nchan's HTTP publisher).
func redisCommands(ctx context.Context, pub pubConfig) (int64, bool) {
	if pub.cluster || pub.mode == "nchan" || strings.Contains(pub.redis, ",") {
		return 0, false
	}
	c := redis.NewClient(&redis.Options{Addr: pub.redis})
	defer c.Close()
	info, err := c.Info(ctx, "stats").Result()
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_commands_processed:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
