package notify

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/caddy-notify/notify/internal/testkit"
)

// The tests in this file attack the auth path as an attacker would: streams
// reset as soon as they are opened (HTTP/2 rapid reset), each with a fresh
// token or all with one, and a flood of HTTP/1.1 clients that give up. The
// auth API is a stub that measures what a real one would suffer: its peak
// of requests in flight and the connections it was made to accept.

// floodAuthAPI is an auth API that takes delay to answer every request and,
// like a real one, keeps working on a request whose client has closed the
// connection: the work is not undone by leaving.
type floodAuthAPI struct {
	*httptest.Server
	delay   time.Duration
	replies map[string]testkit.AuthReply

	calls    atomic.Int64
	inFlight atomic.Int64
	peak     atomic.Int64
	conns    atomic.Int64 // connections accepted
}

func startFloodAuthAPI(t testing.TB, delay time.Duration, replies map[string]testkit.AuthReply) *floodAuthAPI {
	t.Helper()
	a := &floodAuthAPI{delay: delay, replies: replies}
	a.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.calls.Add(1)
		n := a.inFlight.Add(1)
		defer a.inFlight.Add(-1)
		for {
			p := a.peak.Load()
			if n <= p || a.peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(a.delay) // not cut short by the client leaving
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		rep, ok := a.replies[token]
		if !ok {
			rep = testkit.AuthReply{Status: http.StatusUnauthorized, Body: `{"detail":"Invalid token"}`}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.Status)
		_, _ = io.WriteString(w, rep.Body)
	}))
	a.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			a.conns.Add(1)
		}
	}
	a.Start()
	t.Cleanup(a.Close)
	return a
}

// serveH2C runs routes as a Caddy site speaking HTTP/1.1 and h2c, with
// {auth} standing for auth's URL, and returns the site's host:port.
func serveH2C(t testing.TB, rs *testkit.Redis, auth *floodAuthAPI, routes string) string {
	t.Helper()
	cfg := &caddyConfig{
		redis: rs,
		auth:  &testkit.AuthAPI{Server: auth.Server},
		global: `
	servers {
		protocols h1 h2c
	}`,
		routes: routes,
	}
	return strings.TrimPrefix(cfg.load(t), "http://")
}

// randomToken returns a token the auth API has never seen.
func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// The rapid-reset attacker sends a batch of streams every attackTick:
// 8,000 a second, the pace of a measured attack (77,000 streams in 10 s).
// Unpaced, it only measures how a CPU shared with the attacker is divided.
const (
	attackBatch = 200
	attackTick  = 25 * time.Millisecond
)

// rapidReset opens streams on one h2c connection to addr, attackBatch every
// attackTick, each with the token tokenFor returns, and resets each at once
// (HEADERS then RST_STREAM), until ctx is done. When the server closes the
// connection (GOAWAY), it dials again. It returns the streams it opened.
func rapidReset(ctx context.Context, addr string, tokenFor func() string) (streams int64) {
	tick := time.NewTicker(attackTick)
	defer tick.Stop()
	for ctx.Err() == nil {
		n, err := rapidResetConn(ctx, addr, tick.C, tokenFor)
		streams += n
		if err != nil && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return streams
}

func rapidResetConn(ctx context.Context, addr string, tick <-chan time.Time, tokenFor func() string) (int64, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	bw := bufio.NewWriterSize(conn, 64<<10)
	fr := http2.NewFramer(bw, conn)
	var wmu sync.Mutex // the reader acknowledges SETTINGS and PING
	wmu.Lock()
	_, _ = bw.WriteString(http2.ClientPreface)
	_ = fr.WriteSettings()
	err = bw.Flush()
	wmu.Unlock()
	if err != nil {
		return 0, err
	}

	dead := make(chan struct{})
	go func() {
		defer close(dead)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			wmu.Lock()
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					_ = fr.WritePing(true, f.Data)
				}
			case *http2.GoAwayFrame:
				wmu.Unlock()
				return
			}
			_ = bw.Flush()
			wmu.Unlock()
		}
	}()

	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	var streams int64
	for id := uint32(1); id < 1<<30; {
		select {
		case <-dead:
			return streams, errors.New("connection closed by the server")
		case <-ctx.Done():
			return streams, nil
		case <-tick:
		}
		wmu.Lock()
		for range attackBatch {
			hbuf.Reset()
			_ = enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
			_ = enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "http"})
			_ = enc.WriteField(hpack.HeaderField{Name: ":authority", Value: addr})
			_ = enc.WriteField(hpack.HeaderField{Name: ":path", Value: "/"})
			_ = enc.WriteField(hpack.HeaderField{Name: "authorization", Value: "Bearer " + tokenFor()})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true})
			_ = fr.WriteRSTStream(id, http2.ErrCodeCancel)
			id += 2
			streams++
		}
		err := bw.Flush()
		wmu.Unlock()
		if err != nil {
			return streams, err
		}
	}
	return streams, nil
}

// openFrom opens a stream at url over its own HTTP/1.1 connection from the
// local address src, and returns how long the 200 and the first frame (the
// retry field) took.
func openFrom(t testing.TB, src, url, token string) (time.Duration, error) {
	t.Helper()
	tr := &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext,
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req := testkit.Request(t, url, token).WithContext(ctx)
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return time.Since(start), err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return time.Since(start), fmt.Errorf("status %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return time.Since(start), fmt.Errorf("reading the first frame: %w", err)
		}
		if line == "\n" {
			return time.Since(start), nil
		}
	}
}

// settleGoroutines waits up to timeout for the goroutine count to come back
// to within slack of base, and returns the last count.
func settleGoroutines(base, slack int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		n := runtime.NumGoroutine()
		if n <= base+slack || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAuthRapidResetFreshTokens is the rapid-reset attack: one h2c connection
// opening streams with fresh random tokens and resetting each at once,
// against an auth API that takes 200 ms. The auth API must never see more
// than auth_concurrency requests at once nor more calls than those slots
// can serve, the goroutines must come back, and meanwhile a user on
// another connection from another address must get a stream in under 1 s.
func TestAuthRapidResetFreshTokens(t *testing.T) {
	const (
		slots     = 8
		authDelay = 200 * time.Millisecond
		attack    = 3 * time.Second
	)
	rs := testkit.StartRedis(t)
	auth := startFloodAuthAPI(t, authDelay, testkit.Users("alice"))
	addr := serveH2C(t, rs, auth, fmt.Sprintf(`
	notify {
		redis {redis}
		auth_url {auth}
		auth_concurrency %d
	}`, slots))
	url := "http://" + addr + "/"
	if d, err := openFrom(t, "127.0.0.2", url, "alice-token"); err != nil {
		t.Fatalf("before the attack: %v after %s", err, d)
	}
	callsBefore := auth.calls.Load()
	base := runtime.NumGoroutine()

	ctx, cancel := context.WithTimeout(t.Context(), attack)
	defer cancel()
	var streams atomic.Int64
	attackDone := make(chan struct{})
	go func() {
		defer close(attackDone)
		streams.Store(rapidReset(ctx, addr, randomToken))
	}()

	var waits []time.Duration
	time.Sleep(300 * time.Millisecond) // let the attack build up
	for ctx.Err() == nil {
		d, err := openFrom(t, "127.0.0.2", url, "alice-token")
		if err != nil {
			t.Errorf("legitimate user during the attack: %v after %s", err, d)
		}
		waits = append(waits, d)
		time.Sleep(200 * time.Millisecond)
	}
	<-attackDone
	attackCalls := auth.calls.Load() - callsBefore
	// Besides the baseline: the pooled connections to the auth API, up to
	// one per slot, each with two goroutines here and one in the stub.
	slack := 3*slots + 10
	n := settleGoroutines(base, slack, 5*time.Second)
	t.Logf("%d streams reset in %s; %d auth calls, peak %d in flight on %d connections; legitimate user waited %v; goroutines %d before, %d after",
		streams.Load(), attack, attackCalls, auth.peak.Load(), auth.conns.Load(), waits, base, n)

	if p := auth.peak.Load(); p > slots {
		t.Errorf("auth API saw %d requests in flight; auth_concurrency is %d", p, slots)
	}
	// Each slot serves at most one call per authDelay; the legitimate
	// user's checks and a little timing slack come on top.
	if limit := int64(slots*int(attack/authDelay)) + int64(len(waits)) + 2*slots; attackCalls > limit {
		t.Errorf("%d auth calls during the attack, want at most %d: amplification", attackCalls, limit)
	}
	for i, d := range waits {
		if d >= time.Second {
			t.Errorf("legitimate stream %d took %s during the attack, want under 1s", i, d)
		}
	}
	if len(waits) < 3 {
		t.Errorf("only %d legitimate streams measured during the attack", len(waits))
	}
	if n > base+slack {
		t.Errorf("%d goroutines 5s after the attack, %d before", n, base)
	}
}

// holdUntilReset is a test handler that passes a request on only once its
// client has left (or after a second): placed before notify, it makes
// every reset stream reach the auth check already cancelled, which on a
// busy server happens to many of them on their own (x/net queues the
// handlers of a connection that resets faster than they run).
type holdUntilReset struct{}

func (holdUntilReset) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.hold_until_reset", New: func() caddy.Module { return new(holdUntilReset) }}
}

func (holdUntilReset) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	select {
	case <-r.Context().Done():
	case <-time.After(time.Second):
	}
	return next.ServeHTTP(w, r)
}

func init() {
	caddy.RegisterModule(holdUntilReset{})
	httpcaddyfile.RegisterHandlerDirective("hold_until_reset", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		return holdUntilReset{}, nil
	})
}

// TestAuthRapidResetOneToken is the same attack with one valid token on
// every stream, each reaching the auth check after its reset: none may
// cost an auth call (main made 4,201 calls for 217,200 such streams, one
// per answer, every one for a stream already gone).
func TestAuthRapidResetOneToken(t *testing.T) {
	const (
		slots  = 8
		attack = 3 * time.Second
	)
	rs := testkit.StartRedis(t)
	auth := startFloodAuthAPI(t, 5*time.Millisecond, testkit.Users("alice"))
	addr := serveH2C(t, rs, auth, fmt.Sprintf(`
	route {
		hold_until_reset
		notify {
			redis {redis}
			auth_url {auth}
			auth_concurrency %d
		}
	}`, slots))
	ctx, cancel := context.WithTimeout(t.Context(), attack)
	defer cancel()
	abandoned := testutil.ToFloat64(notifyMetrics.AuthAbandoned)
	streams := rapidReset(ctx, addr, func() string { return "alice-token" })
	calls := auth.calls.Load()
	t.Logf("%d streams reset in %s with one token; %d auth calls, %.0f checks abandoned",
		streams, attack, calls, testutil.ToFloat64(notifyMetrics.AuthAbandoned)-abandoned)
	if streams < 1000 {
		t.Fatalf("only %d streams opened: the attack did not run", streams)
	}
	if calls != 0 {
		t.Errorf("%d auth calls for %d streams reset before their check", calls, streams)
	}
}

// TestAuthHTTP1Flood: 3,000 clients, each on its own HTTP/1.1 connection
// with its own token, ask for a stream at once and give up after 300 ms,
// while the auth API takes 200 ms. The auth API must see at most
// auth_concurrency requests at once, on at most as many connections: a
// request whose client left is neither cancelled (which would close its
// connection while the auth API still works on it) nor redialled.
func TestAuthHTTP1Flood(t *testing.T) {
	const (
		slots     = 8
		clients   = 3000
		authDelay = 200 * time.Millisecond
		giveUp    = 300 * time.Millisecond
	)
	rs := testkit.StartRedis(t)
	auth := startFloodAuthAPI(t, authDelay, testkit.Users("alice"))
	addr := serveH2C(t, rs, auth, fmt.Sprintf(`
	notify {
		redis {redis}
		auth_url {auth}
		auth_concurrency %d
	}`, slots))
	// Warm up: Redis subscribed, one pooled connection to the auth API.
	if d, err := openFrom(t, "127.0.0.1", "http://"+addr+"/", "alice-token"); err != nil {
		t.Fatalf("before the flood: %v after %s", err, d)
	}

	// Every connection is open before the first request is sent, so the
	// requests arrive together. No goroutine per client: under the race
	// detector, Caddy's two per request are already 6,000.
	conns := make([]net.Conn, clients)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < clients; i += 16 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Errorf("dialing client %d: %v", i, err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if t.Failed() {
		t.FailNow()
	}
	reqs := make([][]byte, clients)
	for i := range reqs {
		reqs[i] = []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + randomToken() + "\r\n\r\n")
	}
	callsBefore := auth.calls.Load()
	start := time.Now()
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < clients; i += 16 {
				if _, err := conns[i].Write(reqs[i]); err != nil {
					t.Errorf("sending request %d: %v", i, err)
					return
				}
				time.AfterFunc(giveUp, func() { conns[i].Close() })
			}
		})
	}
	wg.Wait()
	sent := time.Since(start)
	// Every client gives up; Caddy may take a while to notice them all
	// under the race detector. Wait until the auth API has been idle for
	// a while.
	time.Sleep(giveUp)
	var calls int64
	deadline := time.Now().Add(20 * time.Second)
	for quiet := 0; quiet < 5 && time.Now().Before(deadline); {
		time.Sleep(authDelay)
		if n := auth.calls.Load() - callsBefore; n == calls && auth.inFlight.Load() == 0 {
			quiet++
		} else {
			calls, quiet = n, 0
		}
	}
	t.Logf("%d HTTP/1.1 clients sent in %s, gave up after %s: %d auth calls, peak %d in flight on %d connections",
		clients, sent.Round(time.Millisecond), giveUp, calls, auth.peak.Load(), auth.conns.Load())

	if p := auth.peak.Load(); p > slots {
		t.Errorf("auth API saw %d requests in flight; auth_concurrency is %d", p, slots)
	}
	if c := auth.conns.Load(); c > slots {
		t.Errorf("auth API accepted %d connections; auth_concurrency is %d", c, slots)
	}
}
