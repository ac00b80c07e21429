package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// prober is the legitimate user of the attack workloads: every interval it
// opens a stream with a valid token over a new HTTP/1.1 connection from its
// own source address (the attacker's is another), and records how long the
// stream took to open — to its first frame (the module's `retry:`), or to
// the 200 with -probe-frame=false — and the failures: any status but 200, a
// refused or reset connection, or no first frame within its timeout. Each
// probe then closes its stream. At most maxInflight probes are open at once;
// a tick finding them all busy counts as skipped (the server is that slow).
type prober struct {
	url         string // {user} is replaced by user
	user        int
	spread      int    // > 1: probe n opens a stream of user + n mod spread (a new user each time)
	proto       string // h1 (default) or h2: h2c with prior knowledge, a new connection per probe
	src         string // source address, e.g. 127.0.0.2; "" any
	interval    time.Duration
	timeout     time.Duration
	firstFrame  bool // wait for the first frame, not only the 200
	maxInflight int

	lat      hist
	n        atomic.Uint64 // probes started
	ok       atomic.Uint64
	failed   atomic.Uint64
	skipped  atomic.Uint64
	failures errCounts
}

// run probes until ctx ends, then waits for the open probes (each bounded
// by the timeout).
func (p *prober) run(ctx context.Context) {
	if p.maxInflight < 1 {
		p.maxInflight = 64
	}
	sem := make(chan struct{}, p.maxInflight)
	var wg sync.WaitGroup
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				p.once()
			}()
		default:
			p.skipped.Add(1)
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
	}
}

// once opens one stream and records its outcome.
func (p *prober) once() {
	user := p.user
	if n := p.n.Add(1) - 1; p.spread > 1 {
		user += int(n % uint64(p.spread))
	}
	open := p.open
	if p.proto == "h2" {
		open = p.openH2
	}
	d, err := open(user)
	if err != nil {
		p.failed.Add(1)
		p.failures.add(err)
		return
	}
	p.ok.Add(1)
	p.lat.record(d)
}

// open opens a stream of user over HTTP/1.1 and returns the time to its
// first frame (or 200).
func (p *prober) open(user int) (time.Duration, error) {
	u, err := url.Parse(userURL(p.url, user))
	if err != nil {
		return 0, err
	}
	start := time.Now()
	deadline := start.Add(p.timeout)
	d := net.Dialer{Deadline: deadline}
	if p.src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(p.src)}
	}
	conn, err := d.Dial("tcp", u.Host)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nAuthorization: Bearer u" + strconv.Itoa(user) +
		"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 4096), nil)
	if err != nil {
		return 0, err
	}
	// No resp.Body.Close: it would read the endless stream to its end (the
	// deadline); closing the connection ends the probe's stream at once.
	if resp.StatusCode != http.StatusOK {
		return 0, statusError(resp.StatusCode)
	}
	if p.firstFrame {
		if _, err := newFrameReader(resp.Body, 0).next(); err != nil {
			return 0, errors.New("no first frame: " + errKey(err))
		}
	}
	return time.Since(start), nil
}

// openH2 opens a stream of user over a new h2c connection (prior
// knowledge) and returns the time to its first frame (or 200).
func (p *prober) openH2(user int) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	d := net.Dialer{}
	if p.src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(p.src)}
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos, DialContext: d.DialContext, DisableCompression: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, userURL(p.url, user), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer u"+strconv.Itoa(user))
	req.Header.Set("Accept", "text/event-stream")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, statusError(resp.StatusCode)
	}
	if p.firstFrame {
		if _, err := newFrameReader(resp.Body, 0).next(); err != nil {
			return 0, errors.New("no first frame: " + errKey(err))
		}
	}
	return time.Since(start), nil
}

// probeSummary is what the legitimate user saw.
type probeSummary struct {
	Probes   uint64         `json:"probes"`
	OK       uint64         `json:"ok"`
	Failed   uint64         `json:"failed"`
	Skipped  uint64         `json:"skipped"` // ticks with maxInflight probes still open
	P50ms    float64        `json:"p50_ms"`
	P99ms    float64        `json:"p99_ms"`
	Maxms    float64        `json:"max_ms"`
	Failures map[string]int `json:"failures,omitempty"`
}

func (p *prober) summary() probeSummary {
	return probeSummary{Probes: p.ok.Load() + p.failed.Load(), OK: p.ok.Load(), Failed: p.failed.Load(),
		Skipped: p.skipped.Load(), P50ms: msOf(p.lat.quantile(0.5)), P99ms: msOf(p.lat.quantile(0.99)), Maxms: msOf(time.Duration(p.lat.max.Load())),
		Failures: p.failures.snapshot()}
}

func (s probeSummary) String() string {
	out := fmt.Sprintf("%d probes: %d ok (time to stream p50 %.1fms, max %.1fms), %d failed, %d ticks skipped",
		s.Probes, s.OK, s.P50ms, s.Maxms, s.Failed, s.Skipped)
	for _, k := range sortedKeys(s.Failures) {
		out += fmt.Sprintf("\n    failure x%d: %s", s.Failures[k], k)
	}
	return out
}

// msOf is d in milliseconds, rounded to the µs.
func msOf(d time.Duration) float64 { return float64(d.Round(time.Microsecond)) / 1e6 }
