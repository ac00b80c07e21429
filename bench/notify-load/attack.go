package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"
)

// The attack workloads (`notify-load attack`): a flood of stream requests
// the auth API must refuse, while a legitimate user keeps opening streams
// from another address. The run has three phases, each with its own probe
// figures: a baseline (the legitimate user alone), the attack, and the
// aftermath (from the end of the attack until the auth API has had no call
// in flight for a second, at most -drain), so that work the server keeps
// doing for an attack that has already stopped shows.

// attackSummary is the attack part of the JSON summary.
type attackSummary struct {
	Kind         string  `json:"kind"` // reset (h2c rapid reset) or flood (HTTP/1.1)
	Token        string  `json:"token"`
	DurationSecs float64 `json:"duration_secs"`

	// The attacker.
	Streams   uint64         `json:"streams_reset,omitempty"` // reset: HEADERS+RST_STREAM pairs written
	Loops     uint64         `json:"loops,omitempty"`
	LoopMs    float64        `json:"loop_interval_ms,omitempty"` // reset: the pace asked for; 0 as fast as possible
	Requests  uint64         `json:"requests,omitempty"`         // flood: requests written
	Answered  uint64         `json:"answered,omitempty"`         // flood: answered within the give-up time
	GaveUp    uint64         `json:"gave_up,omitempty"`          // flood: not answered in time
	Conns     uint64         `json:"attacker_conns"`             // reset: connections made; flood: connections tried
	Responses uint64         `json:"responses,omitempty"`        // reset: HEADERS from the server
	ServerRST uint64         `json:"server_rsts,omitempty"`
	GoAways   map[string]int `json:"goaways,omitempty"`
	Statuses  map[string]int `json:"statuses,omitempty"`
	Errors    map[string]int `json:"errors,omitempty"`

	// The auth API (notify-load auth, -auth-stats).
	AuthCalls        int64   `json:"auth_calls"`       // during the attack; -1 unknown
	AuthCallsAfter   int64   `json:"auth_calls_after"` // from the end of the attack to the end of the aftermath
	AuthPeakInflight int64   `json:"auth_peak_inflight"`
	AuthConns        int64   `json:"auth_conns"` // connections it accepted, attack and aftermath
	AuthPeakOpen     int64   `json:"auth_peak_open_conns"`
	AftermathSecs    float64 `json:"aftermath_secs"` // attack end → auth API idle (or -drain)
	AuthIdle         bool    `json:"auth_idle"`      // it became idle within -drain

	// The legitimate user.
	Baseline  probeSummary `json:"probe_baseline"`
	Probe     probeSummary `json:"probe"`
	Aftermath probeSummary `json:"probe_aftermath"`

	// The server.
	CPUAttackSecs    float64 `json:"cpu_attack_secs"`
	CPUAftermathSecs float64 `json:"cpu_aftermath_secs"`
	RSSBeforeKiB     int64   `json:"rss_before_kib"`
	RSSPeakKiB       int64   `json:"rss_peak_kib"`
	RSSAfterKiB      int64   `json:"rss_after_kib"`
	ServerAlive      bool    `json:"server_alive"`
}

func attackMain(args []string) int {
	fs := flag.NewFlagSet("attack", flag.ExitOnError)
	kind := fs.String("kind", "reset", "reset: h2c rapid reset (HEADERS then RST_STREAM); flood: HTTP/1.1 distinct-token flood")
	rawURL := fs.String("url", "http://127.0.0.1:8080/events", "stream URL; {user} is replaced by a user id (nchan)")
	duration := fs.Duration("duration", 10*time.Second, "length of the attack")
	baseline := fs.Duration("baseline", 2*time.Second, "the legitimate user alone, before the attack")
	drain := fs.Duration("drain", 10*time.Second, "after the attack, longest wait for the auth API to become idle")
	token := fs.String("token", "", "reset: the token of every stream (e.g. u1, a valid one); empty: a fresh random token per stream")
	perLoop := fs.Int("per-loop", 200, "reset: streams written (and reset) per write")
	loopInterval := fs.Duration("loop-interval", 25*time.Millisecond, "reset: one write of -per-loop streams this often (the red-team pace: 200 every 25ms); 0: as fast as possible")
	clients := fs.Int("clients", 3000, "flood: concurrent connections")
	giveUp := fs.Duration("give-up", 300*time.Millisecond, "flood: a client gives up this long after it started connecting, and starts over")
	src := fs.String("src", "127.0.0.1", "the attacker's source address")
	probeSrc := fs.String("probe-src", "127.0.0.2", "the legitimate user's source address")
	probeUser := fs.Int("probe-user", 0, "the legitimate user (token u<N>)")
	probeInterval := fs.Duration("probe-interval", 250*time.Millisecond, "the legitimate user opens a stream this often")
	probeTimeout := fs.Duration("probe-timeout", 10*time.Second, "a probe not streaming after this long failed")
	probeFrame := fs.Bool("probe-frame", true, "time a probe to its first frame (false: to its 200)")
	writeTimeout := fs.Duration("write-timeout", 5*time.Second, "reset: a write blocked this long ends the connection (the attacker reconnects)")
	serverPids := fs.String("server-pids", "", "comma-separated pids of the server (CPU, RSS)")
	authStatsURL := fs.String("auth-stats", "", "the /stats URL of the auth API (notify-load auth)")
	metricsURL := fs.String("metrics-url", "", "Prometheus endpoint of the server: deltas of caddy_notify_*_total over the run")
	label := fs.String("label", "", "name of the run in the summary")
	deadline := fs.Duration("deadline", 5*time.Minute, "the whole run ends by then, whatever happens")
	_ = fs.Parse(args)
	if *kind != "reset" && *kind != "flood" || *perLoop < 1 || *clients < 1 || *duration <= 0 || *probeInterval <= 0 {
		fmt.Fprintln(os.Stderr, "attack: -kind must be reset or flood; -per-loop, -clients, -duration and -probe-interval positive")
		return 2
	}
	pids, err := parsePids(*serverPids)
	if err != nil {
		fmt.Fprintln(os.Stderr, "attack:", err)
		return 2
	}
	u, err := url.Parse(*rawURL)
	if err != nil || u.Host == "" {
		fmt.Fprintln(os.Stderr, "attack: bad -url")
		return 2
	}
	raiseNofile()
	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	time.AfterFunc(*deadline+15*time.Second, func() { // probes and aftermath are bounded too
		fmt.Fprintln(os.Stderr, "attack: deadline passed; exiting")
		deadlineSummary(summary{Label: *label, URL: *rawURL, Attack: &attackSummary{Kind: *kind}})
		os.Exit(3)
	})

	s := summary{Label: *label, URL: *rawURL, Proto: map[string]string{"reset": "h2", "flood": "h1"}[*kind]}
	as := &attackSummary{Kind: *kind, Token: "random"}
	if *kind == "reset" {
		as.LoopMs = float64(*loopInterval) / 1e6
	}
	if *token != "" {
		as.Token = "valid: " + *token
		if *kind == "flood" {
			as.Token = "random" // the flood's tokens are always distinct
		}
	}
	s.Attack = as
	newProber := func() *prober {
		return &prober{url: *rawURL, user: *probeUser, src: *probeSrc, interval: *probeInterval,
			timeout: *probeTimeout, firstFrame: *probeFrame}
	}
	getAuth := func(reset bool) (authStats, bool) {
		if *authStatsURL == "" {
			return authStats{}, false
		}
		st, err := fetchAuthStats(*authStatsURL, reset)
		if err != nil {
			fmt.Fprintln(os.Stderr, "attack: auth stats:", err)
			return st, false
		}
		return st, true
	}
	fmt.Printf("notify-load attack: %s against %s for %s (tokens: %s); legitimate user u%d from %s every %s\n",
		*kind, *rawURL, *duration, as.Token, *probeUser, *probeSrc, *probeInterval)

	// Baseline.
	p0 := newProber()
	bctx, bcancel := context.WithTimeout(ctx, *baseline)
	p0.run(bctx)
	bcancel()
	as.Baseline = p0.summary()

	// The attack.
	var metricsBefore map[string]float64
	if *metricsURL != "" {
		if metricsBefore, err = fetchMetrics(*metricsURL); err != nil {
			fmt.Fprintln(os.Stderr, "attack: metrics:", err)
		}
	}
	auth0, authOK := getAuth(true)
	srv0 := sampleProcs(pids)
	as.RSSBeforeKiB = srv0.RSSKiB
	peak := startRSSPeak(pids, 50*time.Millisecond)
	actx, acancel := context.WithTimeout(ctx, *duration)
	var rr *rapidReset
	var fl *h1Flood
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		defer acancel() // the probes stop with the attack
		switch *kind {
		case "reset":
			rr = &rapidReset{addr: u.Host, authority: u.Host, path: userURL(u.RequestURI(), *probeUser+1), token: *token,
				perLoop: *perLoop, interval: *loopInterval, src: *src, writeTimeout: *writeTimeout}
			rr.run(actx)
		case "flood":
			fl = &h1Flood{url: *rawURL, clients: *clients, giveUp: *giveUp, src: *src}
			fl.run(actx)
		}
	}()
	p1 := newProber()
	p1done := make(chan struct{})
	go func() { p1.run(actx); close(p1done) }()
	<-done
	attackEnd := time.Now()
	as.DurationSecs = attackEnd.Sub(start).Seconds()
	srv1 := sampleProcs(pids)
	auth1, _ := getAuth(false)
	<-p1done // its last probes, each bounded by -probe-timeout, overlap the aftermath

	// The aftermath: until the auth API has been idle for a second.
	p2 := newProber()
	dctx, dcancel := context.WithTimeout(ctx, *drain)
	pdone := make(chan struct{})
	go func() { p2.run(dctx); close(pdone) }()
	var auth2 authStats
	if authOK {
		idleSince := time.Time{}
		for dctx.Err() == nil {
			st, ok := getAuth(false)
			if ok {
				auth2 = st
				if st.Inflight == 0 {
					if idleSince.IsZero() {
						idleSince = time.Now()
					} else if time.Since(idleSince) >= time.Second {
						as.AuthIdle = true
						break
					}
				} else {
					idleSince = time.Time{}
				}
			}
			sleepCtx(dctx, 100*time.Millisecond)
		}
		as.AftermathSecs = time.Since(attackEnd).Seconds()
		if as.AuthIdle {
			as.AftermathSecs = idleSince.Sub(attackEnd).Seconds()
		}
	} else {
		sleepCtx(dctx, time.Second)
	}
	dcancel()
	<-pdone
	srv2 := sampleProcs(pids)
	as.RSSPeakKiB = peak.close()
	as.RSSAfterKiB = srv2.RSSKiB
	as.ServerAlive = srv2.OK
	if srv0.OK && srv1.OK {
		as.CPUAttackSecs = srv1.CPUSecs - srv0.CPUSecs
	}
	if srv1.OK && srv2.OK {
		as.CPUAftermathSecs = srv2.CPUSecs - srv1.CPUSecs
	}
	as.AuthCalls, as.AuthCallsAfter, as.AuthConns = -1, -1, -1
	if authOK {
		as.AuthCalls = int64(auth1.Calls - auth0.Calls)
		as.AuthCallsAfter = int64(auth2.Calls - auth1.Calls)
		as.AuthConns = int64(auth2.Conns - auth0.Conns)
		as.AuthPeakInflight = max(auth1.PeakIn, auth2.PeakIn)
		as.AuthPeakOpen = max(auth1.PeakOpen, auth2.PeakOpen)
	}
	as.Probe, as.Aftermath = p1.summary(), p2.summary()
	switch {
	case rr != nil:
		as.Streams, as.Loops, as.Conns = rr.streams.Load(), rr.loops.Load(), rr.conns.Load()
		as.Responses, as.ServerRST = rr.responses.Load(), rr.rsts.Load()
		as.GoAways, as.Statuses, as.Errors = rr.goaways.snapshot(), rr.statuses.snapshot(), rr.errs.snapshot()
	case fl != nil:
		as.Requests, as.Answered, as.GaveUp, as.Conns = fl.sent.Load(), fl.answered.Load(), fl.gaveUp.Load(), fl.attempts.Load()
		as.Statuses, as.Errors = fl.statuses.snapshot(), fl.errs.snapshot()
	}
	if metricsBefore != nil {
		if m, err := fetchMetrics(*metricsURL); err == nil {
			s.MetricsDelta = metricDeltas(metricsBefore, m)
		}
	}
	s.OK = as.Probe.Failed == 0 && as.Aftermath.Failed == 0 && (len(pids) == 0 || as.ServerAlive)

	// Report.
	fmt.Println(as.report(pids != nil, authOK))
	printMetrics(s.MetricsDelta)
	fmt.Printf("result: %s\n", map[bool]string{true: "OK", false: "PROBLEMS (see above)"}[s.OK])
	b, _ := json.Marshal(s)
	fmt.Println(string(b))
	if !s.OK {
		return 1
	}
	return 0
}

// report is the human-readable part of the attack's output.
func (as *attackSummary) report(server, auth bool) string {
	var out string
	add := func(format string, a ...any) { out += fmt.Sprintf(format, a...) + "\n" }
	switch as.Kind {
	case "reset":
		pace := "as fast as possible"
		if as.LoopMs > 0 {
			pace = fmt.Sprintf("one write every %gms", as.LoopMs)
		}
		add("attack: %d streams reset (%d writes, %s) over %d connections in %.1fs (%.0f streams/s); server answered %d, reset %d",
			as.Streams, as.Loops, pace, as.Conns, as.DurationSecs, float64(as.Streams)/as.DurationSecs, as.Responses, as.ServerRST)
	case "flood":
		add("attack: %d requests (%d connections tried) in %.1fs (%.0f/s): %d answered, %d gave up",
			as.Requests, as.Conns, as.DurationSecs, float64(as.Requests)/as.DurationSecs, as.Answered, as.GaveUp)
	}
	for _, m := range []struct {
		name string
		m    map[string]int
	}{{"goaway", as.GoAways}, {"answer", as.Statuses}, {"connection ended", as.Errors}} {
		for _, k := range sortedKeys(m.m) {
			add("  %s x%d: %s", m.name, m.m[k], k)
		}
	}
	if auth {
		add("auth API: %d calls during the attack, %d after it; peak %d in flight, %d connections accepted (peak %d open)",
			as.AuthCalls, as.AuthCallsAfter, as.AuthPeakInflight, as.AuthConns, as.AuthPeakOpen)
		idle := fmt.Sprintf("idle %.1fs after the attack ended", as.AftermathSecs)
		if !as.AuthIdle {
			idle = fmt.Sprintf("STILL BUSY %.1fs after the attack ended", as.AftermathSecs)
		}
		add("auth API %s", idle)
	}
	add("legitimate user, baseline: %s", as.Baseline)
	add("legitimate user, during the attack: %s", as.Probe)
	add("legitimate user, aftermath: %s", as.Aftermath)
	if server {
		add("server: %.2f cpu-s during the attack, %.2f in the aftermath; RSS %.1f MiB before, peak %.1f MiB, %.1f MiB after%s",
			as.CPUAttackSecs, as.CPUAftermathSecs, kib2mib(as.RSSBeforeKiB), kib2mib(as.RSSPeakKiB), kib2mib(as.RSSAfterKiB),
			map[bool]string{true: "", false: " (SERVER GONE)"}[as.ServerAlive])
	}
	return out[:len(out)-1]
}

func kib2mib(k int64) float64 { return float64(k) / 1024 }

// deadlineSummary prints the summary line of a run that missed its
// deadline (whatever it measured is lost): the table shows it as failed.
func deadlineSummary(s summary) {
	s.OK = false
	b, _ := json.Marshal(s)
	fmt.Println("result: DEADLINE PASSED")
	fmt.Println(string(b))
}

// printMetrics prints the change of the server's counters.
func printMetrics(d map[string]float64) {
	if len(d) == 0 {
		return
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Println("server metrics, change over the run:")
	for _, k := range keys {
		fmt.Printf("  %s %+.0f\n", k, d[k])
	}
}
