package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The reload workload (run -reload-at): while events are published to
// streams that reconnect as EventSource does (-reconnect), the server is
// reloaded once, -reload-at after publishing starts (the time base R of
// every figure below):
//
//   - through Caddy's admin API (-reload-admin): GET /config/, then POST it
//     back to /load with Cache-Control: must-revalidate, which forces the
//     reload of an unchanged config; with -reload-change, every notify
//     handler's channel (its stream, in stream mode) is renamed first;
//   - or by a command (-reload-cmd, e.g. nginx -s reload), run with sh -c.
//
// A changed reload that succeeded makes the publisher follow: from then on
// it publishes to the new channel or stream (-reload-change) or, by HTTP,
// to -reload-pub-url. Around it, a new user opens a stream every
// -probe-interval (a new user each time), timed to its first frame, in
// three phases: before R, the reload window [R, R+W) and after it. W is
// the server's drain window (-reload-drain: how long it may take to end
// the streams of a changed config) plus the clients' retry delay and 2 s,
// unless -reload-window says otherwise; publishing must last past R+W, so
// that every stream the drain ends has the time to come back while events
// still flow. The auth API's calls are counted in the window and after it,
// with its peak of requests in flight in the window.

// reloadConfig is what the run's reload flags ask for.
type reloadConfig struct {
	at       time.Duration // after publishing starts; 0: no reload
	admin    string        // Caddy's admin API, e.g. http://127.0.0.1:2019
	cmd      string        // or a command
	change   string        // the new channel or stream; "": an unchanged reload
	pubURL   string        // with change: the publisher URL afterwards (HTTP publishing)
	drain    time.Duration // the server's drain window (reload_drain)
	window   time.Duration // the reload window; 0: drain + retry + 2s
	timeout  time.Duration // longest reload (request or command)
	interval time.Duration // probes: one every interval; 0: none
	probeSrc string        // the probes' source address
}

// check completes and checks the reload flags against the run's.
func (rc *reloadConfig) check(cfg *runConfig) error {
	if rc.at <= 0 {
		if rc.admin != "" || rc.cmd != "" || rc.change != "" {
			return errors.New("-reload-admin, -reload-cmd and -reload-change need -reload-at")
		}
		return nil
	}
	if (rc.admin == "") == (rc.cmd == "") {
		return errors.New("-reload-at needs one of -reload-admin and -reload-cmd")
	}
	if rc.drain < 0 || rc.window < 0 || rc.timeout <= 0 || rc.interval < 0 {
		return errors.New("-reload-drain, -reload-window and -probe-interval must not be negative, -reload-timeout positive")
	}
	if rc.window == 0 {
		rc.window = rc.drain + cfg.retry + 2*time.Second
	}
	if cfg.pub.rate <= 0 || rc.at+rc.window > cfg.pub.duration {
		return fmt.Errorf("-reload-at %s plus the reload window %s must end within -duration %s, with a -rate", rc.at, rc.window, cfg.pub.duration)
	}
	httpPub := cfg.pub.mode == "nchan" || cfg.pub.via == "http"
	if rc.change != "" && httpPub && rc.pubURL == "" {
		return errors.New("-reload-change with HTTP publishing needs -reload-pub-url, where the publisher goes afterwards")
	}
	if rc.pubURL != "" && rc.change == "" {
		return errors.New("-reload-pub-url needs -reload-change (an unchanged reload keeps the publisher)")
	}
	return nil
}

func (rc *reloadConfig) kind() string {
	if rc.change != "" {
		return "changed"
	}
	return "unchanged"
}

// reloadSummary is the reload part of the JSON summary. Times in seconds
// are after R (the reload request); -1 when there is nothing to time.
type reloadSummary struct {
	Kind       string  `json:"kind"` // unchanged or changed
	How        string  `json:"how"`  // admin or command
	AtSecs     float64 `json:"at_secs"`
	TookSecs   float64 `json:"took_secs"` // the request or command
	Done       bool    `json:"done"`
	Error      string  `json:"error,omitempty"`
	DrainSecs  float64 `json:"drain_secs"`  // the server's drain window, as told
	RetrySecs  float64 `json:"retry_secs"`  // the clients' delay when the server sends no retry field
	WindowSecs float64 `json:"window_secs"` // the reload window

	// Streams (with -reconnect).
	StreamsEnded      uint64         `json:"streams_ended"` // streams the server ended at least once
	Ends              uint64         `json:"ends"`
	EndsFirstSecs     float64        `json:"ends_first_secs"`
	EndsLastSecs      float64        `json:"ends_last_secs"`
	CloseReasons      map[string]int `json:"close_reasons,omitempty"`
	Reconnects        uint64         `json:"reconnects"`
	ReconnectFailures uint64         `json:"reconnect_failures"`
	ReconnectErrors   map[string]int `json:"reconnect_errors,omitempty"`
	Down              uint64         `json:"down"`    // ended and not back at the end
	Pending           uint64         `json:"pending"` // of those, waiting for an answer to a reconnect then
	UpP50Secs         float64        `json:"up_p50_secs"`
	UpMaxSecs         float64        `json:"up_max_secs"`

	Losing      uint64 `json:"losing"` // streams that lost events
	Lost        uint64 `json:"lost"`
	LostMax     uint64 `json:"lost_max"` // the most one stream lost
	Duplicating uint64 `json:"duplicating"`
	Dups        uint64 `json:"dups"`
	DupMax      uint64 `json:"dup_max"`
	// Every stream the reload affected (ended, or losing events) receiving
	// again (streamFigures.Back): when it was re-established, or, for a
	// late stream (one that lost an event due after that, or lost events
	// without being ended), when the first event after its last loss was
	// due, within BackResolutionSecs (the time between two events of one
	// stream). NotBack: late streams that received nothing after their
	// last loss. AllBackSecs: the last of them, 0 when none was affected,
	// -1 when some never came back (Down or NotBack).
	BackP50Secs        float64 `json:"back_p50_secs"`
	BackMaxSecs        float64 `json:"back_max_secs"`
	Late               uint64  `json:"late"`
	NotBack            uint64  `json:"not_back"`
	BackResolutionSecs float64 `json:"back_resolution_secs"`
	AllBackSecs        float64 `json:"all_back_secs"`
	IDRegressions      uint64  `json:"id_regressions"`
	ResumeGaps         uint64  `json:"resume_gaps"`
	ResumeGapEvents    uint64  `json:"resume_gap_events"`

	// The auth API (-auth-stats or -auth-listen); -1 unknown.
	AuthCallsWindow  int64 `json:"auth_calls_window"`
	AuthCallsAfter   int64 `json:"auth_calls_after"` // from the end of the window to the end of the run
	AuthPeakInflight int64 `json:"auth_peak_inflight"`

	// A new user's time to stream, before the reload, in the window and
	// after it (each probe is one auth API call more).
	ProbeBefore probeSummary `json:"probe_before"`
	ProbeWindow probeSummary `json:"probe_window"`
	ProbeAfter  probeSummary `json:"probe_after"`
}

// reloadRun drives the reload of one run.
type reloadRun struct {
	rc        reloadConfig
	switched  *atomic.Bool // the publisher's: set after a changed reload
	authStats func(reset bool) (authStats, bool)
	newProber func() *prober

	startNs atomic.Int64 // when the reload was asked for
	endNs   atomic.Int64
	err     error // once done is closed
	done    chan struct{}

	auth0, auth1 authStats
	auth0OK      bool
	auth1OK      bool
	probes       [3]*prober
	probesDone   sync.WaitGroup // the probes and the reading of auth1
}

// start runs the reload and its probes in the background, timed from
// pubStart; publishing lasts until pubEnd.
func (rr *reloadRun) start(ctx context.Context, pubStart, pubEnd time.Time) {
	rr.done = make(chan struct{})
	at := pubStart.Add(rr.rc.at)
	windowEnd := at.Add(rr.rc.window)
	probe := func(i int, from, to time.Time) {
		if rr.rc.interval <= 0 {
			return
		}
		p := rr.newProber()
		rr.probes[i] = p
		rr.probesDone.Add(1)
		go func() {
			defer rr.probesDone.Done()
			sleepCtx(ctx, time.Until(from))
			pctx, cancel := context.WithDeadline(ctx, to)
			defer cancel()
			p.run(pctx)
		}()
	}
	probe(0, pubStart, at)
	probe(1, at, windowEnd)
	probe(2, windowEnd, pubEnd)
	go func() {
		defer close(rr.done)
		sleepCtx(ctx, time.Until(at))
		if ctx.Err() != nil {
			rr.err = ctx.Err()
			return
		}
		rr.auth0, rr.auth0OK = rr.authStats(true)
		rr.probesDone.Add(1)
		go func() {
			defer rr.probesDone.Done()
			sleepCtx(ctx, time.Until(windowEnd))
			rr.auth1, rr.auth1OK = rr.authStats(false)
		}()
		rr.startNs.Store(time.Now().UnixNano())
		if rr.rc.admin != "" {
			rr.err = reloadAdmin(ctx, rr.rc.admin, rr.rc.change, rr.rc.timeout)
		} else {
			rr.err = reloadCommand(ctx, rr.rc.cmd, rr.rc.timeout)
		}
		rr.endNs.Store(time.Now().UnixNano())
		if rr.err == nil && rr.rc.change != "" {
			rr.switched.Store(true)
		}
	}()
}

// baseNs is the time base of the per-stream figures: when the reload was
// asked for (or was due, if it has not been).
func (rr *reloadRun) baseNs(pubStart time.Time) int64 {
	if ns := rr.startNs.Load(); ns > 0 {
		return ns
	}
	return pubStart.Add(rr.rc.at).UnixNano()
}

// finish waits for the reload and the probes (each bounded by its
// timeout) and returns the summary, with the streams' figures and what
// they ended on (closeReasons) and failed reconnecting on.
func (rr *reloadRun) finish(st *streamTotals, retry time.Duration, rate float64, users, fan int,
	closeReasons, reconnErrs map[string]int,
) *reloadSummary {
	<-rr.done
	rr.probesDone.Wait()
	r := &reloadSummary{Kind: rr.rc.kind(), How: "admin", AtSecs: rr.rc.at.Seconds(), DrainSecs: rr.rc.drain.Seconds(),
		RetrySecs: retry.Seconds(), WindowSecs: rr.rc.window.Seconds(), Done: rr.err == nil,
		AuthCallsWindow: -1, AuthCallsAfter: -1, AuthPeakInflight: -1}
	if rr.rc.cmd != "" {
		r.How = "command"
	}
	if rr.err != nil {
		r.Error = rr.err.Error()
	}
	base := rr.startNs.Load()
	if base > 0 && rr.endNs.Load() > 0 {
		r.TookSecs = float64(rr.endNs.Load()-base) / 1e9
	}
	after := func(ns int64) float64 {
		if ns <= 0 || base <= 0 {
			return -1
		}
		return float64(ns-base) / 1e9
	}
	f := st.f
	r.StreamsEnded, r.Ends, r.Down, r.Pending = f.Ended, f.Ends, f.Down, f.Pending
	r.EndsFirstSecs, r.EndsLastSecs = after(f.FirstEndNs), after(f.LastEndNs)
	r.CloseReasons, r.ReconnectErrors = closeReasons, reconnErrs
	r.Reconnects, r.ReconnectFailures = f.Reconnects, f.Failures
	secs := func(d time.Duration) float64 { return d.Seconds() }
	r.UpP50Secs, r.UpMaxSecs = -1, -1
	if st.up.n.Load() > 0 {
		r.UpP50Secs, r.UpMaxSecs = secs(st.up.quantile(0.5)), secs(time.Duration(st.up.max.Load()))
	}
	r.Losing, r.Lost, r.LostMax = f.Losing, f.Lost, f.LostMax
	r.Duplicating, r.Dups, r.DupMax = f.Duplicating, f.Dups, f.DupMax
	r.BackP50Secs, r.BackMaxSecs = -1, -1
	if st.back.n.Load() > 0 {
		r.BackP50Secs, r.BackMaxSecs = secs(st.back.quantile(0.5)), secs(time.Duration(st.back.max.Load()))
	}
	r.Late, r.NotBack = f.Late, f.NotBack
	if rate > 0 {
		r.BackResolutionSecs = float64(users) / rate
		if fan > 0 {
			r.BackResolutionSecs = float64(fan) / rate
		}
	}
	r.AllBackSecs = max(r.BackMaxSecs, 0)
	if r.Down > 0 || r.NotBack > 0 {
		r.AllBackSecs = -1
	}
	r.IDRegressions, r.ResumeGaps, r.ResumeGapEvents = f.IDRegress, f.ResumeGaps, f.ResumeGapEvents
	if rr.auth0OK && rr.auth1OK {
		r.AuthCallsWindow = int64(rr.auth1.Calls - rr.auth0.Calls)
		r.AuthPeakInflight = rr.auth1.PeakIn
		if a2, ok := rr.authStats(false); ok {
			r.AuthCallsAfter = int64(a2.Calls - rr.auth1.Calls)
		}
	}
	for i, ps := range []*probeSummary{&r.ProbeBefore, &r.ProbeWindow, &r.ProbeAfter} {
		if p := rr.probes[i]; p != nil {
			*ps = p.summary()
		}
	}
	return r
}

// report is the human-readable part of a reload run's output.
func (r *reloadSummary) report() string {
	var b strings.Builder
	add := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	status := fmt.Sprintf("done in %.2fs", r.TookSecs)
	if !r.Done {
		status = "FAILED: " + r.Error
	}
	add("reload (%s, %s) at %.1fs of publishing: %s; drain window %.0fs, clients' retry %.0fs, reload window %.0fs",
		r.Kind, r.How, r.AtSecs, status, r.DrainSecs, r.RetrySecs, r.WindowSecs)
	add("  streams ended by the server: %d (%d ends in all; first %.2fs, last %.2fs after the reload)",
		r.StreamsEnded, r.Ends, r.EndsFirstSecs, r.EndsLastSecs)
	for _, k := range sortedKeys(r.CloseReasons) {
		add("    ended x%d: %s", r.CloseReasons[k], k)
	}
	add("  reconnects: %d done, %d attempts failed; re-established p50 %.2fs, last %.2fs after the reload; %d still down at the end (%d of them waiting for an answer to a reconnect)",
		r.Reconnects, r.ReconnectFailures, r.UpP50Secs, r.UpMaxSecs, r.Down, r.Pending)
	for _, k := range sortedKeys(r.ReconnectErrors) {
		add("    reconnect failure x%d: %s", r.ReconnectErrors[k], k)
	}
	add("  events lost: %d in all, by %d streams, at most %d by one; duplicated: %d, by %d streams, at most %d by one",
		r.Lost, r.Losing, r.LostMax, r.Dups, r.Duplicating, r.DupMax)
	add("  streams that lost events after they were back, or without being ended: %d (%d received nothing after; timed by the events' schedule, ±%.1fs)",
		r.Late, r.NotBack, r.BackResolutionSecs)
	all := fmt.Sprintf("%.2fs after the reload", r.AllBackSecs)
	if r.AllBackSecs < 0 {
		all = fmt.Sprintf("NEVER: %d streams down (%d waiting for an answer), %d not receiving at the end", r.Down, r.Pending, r.NotBack)
	}
	add("  streams receiving again p50 %.2fs; every stream receiving again: %s (drain window %.0fs + retry %.0fs = %.0fs)",
		r.BackP50Secs, all, r.DrainSecs, r.RetrySecs, r.DrainSecs+r.RetrySecs)
	add("  event ids: %d regressions; resumes that skipped events: %d (%d events)", r.IDRegressions, r.ResumeGaps, r.ResumeGapEvents)
	add("  auth API: %d calls in the reload window (peak %d in flight), %d after it (probes: one call each)",
		r.AuthCallsWindow, r.AuthPeakInflight, r.AuthCallsAfter)
	add("  new user's time to stream, before: %s", r.ProbeBefore)
	add("  new user's time to stream, reload window: %s", r.ProbeWindow)
	add("  new user's time to stream, after: %s", r.ProbeAfter)
	return strings.TrimSuffix(b.String(), "\n")
}

// reloadAdmin reloads a Caddy through its admin API: GET /config/, rename
// every notify handler's source to change when it is set, and POST the
// result to /load, forced (Cache-Control: must-revalidate) so that an
// unchanged config is loaded again too.
func reloadAdmin(ctx context.Context, admin, change string, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout}
	base := strings.TrimSuffix(admin, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/config/", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("getting the config: %w", err)
	}
	cfg, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("getting the config: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("getting the config: status %d: %s", resp.StatusCode, firstLine(cfg))
	}
	if change != "" {
		if cfg, err = withSource(cfg, change); err != nil {
			return err
		}
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, base+"/load", bytes.NewReader(cfg))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err = c.Do(req)
	if err != nil {
		return fmt.Errorf("POST /load: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /load: status %d: %s", resp.StatusCode, firstLine(body))
	}
	return nil
}

// withSource returns the JSON config cfg with the source of every notify
// handler renamed: its stream when it reads one, else its channel.
func withSource(cfg []byte, name string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(cfg))
	dec.UseNumber() // durations in nanoseconds must not go through float64
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	n := 0
	var walk func(any)
	walk = func(x any) {
		switch t := x.(type) {
		case map[string]any:
			if t["handler"] == "notify" {
				if _, ok := t["stream"]; ok {
					t["stream"] = name
				} else {
					t["channel"] = name
				}
				n++
			}
			for _, e := range t {
				walk(e)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(v)
	if n == 0 {
		return nil, errors.New("the config has no notify handler to change")
	}
	return json.Marshal(v)
}

// reloadCommand runs command with sh -c, for at most timeout.
func reloadCommand(ctx context.Context, command string, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, "sh", "-c", command)
	cmd.WaitDelay = time.Second // its children may hold the output open
	out, err := cmd.CombinedOutput()
	if err != nil {
		if cctx.Err() != nil {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		return fmt.Errorf("%s: %w: %s", command, err, firstLine(out))
	}
	return nil
}

// firstLine is the first line of b, at most 200 bytes, for an error.
func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// streamTotals adds up the workers' per-stream figures.
type streamTotals struct {
	f        streamFigures // sums, maxima, first and last end
	up, back hist
}

func (t *streamTotals) add(f streamFigures) {
	t.f.Streams += f.Streams
	t.f.Ended += f.Ended
	t.f.Ends += f.Ends
	t.f.Down += f.Down
	t.f.Pending += f.Pending
	t.f.Reconnects += f.Reconnects
	t.f.Failures += f.Failures
	if f.FirstEndNs > 0 && (t.f.FirstEndNs == 0 || f.FirstEndNs < t.f.FirstEndNs) {
		t.f.FirstEndNs = f.FirstEndNs
	}
	t.f.LastEndNs = max(t.f.LastEndNs, f.LastEndNs)
	t.f.Losing += f.Losing
	t.f.Lost += f.Lost
	t.f.LostMax = max(t.f.LostMax, f.LostMax)
	t.f.Duplicating += f.Duplicating
	t.f.Dups += f.Dups
	t.f.DupMax = max(t.f.DupMax, f.DupMax)
	t.f.NotBack += f.NotBack
	t.f.Late += f.Late
	t.f.IDRegress += f.IDRegress
	t.f.ResumeGaps += f.ResumeGaps
	t.f.ResumeGapEvents += f.ResumeGapEvents
	t.up.merge(f.Up, f.MaxUpNs)
	t.back.merge(f.Back, f.MaxBackNs)
}

// reloadOK says whether a reload run went right: the reload was done,
// every stream that was established is receiving again at the end, and
// nothing arrived that should not have. Lost and duplicated events are
// the run's figures, not failures, in pub/sub (no protocol resumes it);
// in stream mode (resume by Last-Event-ID) any is a failure, as is a
// resume that skips events.
func reloadOK(s *summary, streamMode bool) bool {
	r := s.Reload
	ok := r.Done && s.StreamsFailed == 0 && r.Down == 0 && r.NotBack == 0 && s.Misrouted == 0 &&
		s.Unparsed == 0 && s.PublishErrors == 0 && r.IDRegressions == 0
	if streamMode {
		ok = ok && s.Lost == 0 && s.Duplicated == 0 && r.ResumeGaps == 0
	}
	return ok
}
