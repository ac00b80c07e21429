// Package clienttest tests the browser client, client/notify.js, in headless
// Chromium against a real Caddy with the notify module (in this process), a
// real redis-server and a small auth API: every behaviour the client
// promises, with exact sequences of the events each tab received.
package clienttest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/redis/go-redis/v9"

	// The notify handler and Caddy's standard modules (reverse_proxy,
	// forward_auth, metrics, the Caddyfile adapter), as in a custom build.
	_ "github.com/caddy-notify/notify"
	"github.com/caddy-notify/notify/client"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

const (
	channel        = "client-test"         // pub/sub mode (/events)
	streamKey      = "client-test-stream"  // stream mode (/sevents and the others)
	cookie         = "tok"                 // the notify handlers' token_cookie
	controlChannel = "client-test-control" // /events' control_channel
)

// env is what every test uses: started once by TestMain.
var env struct {
	base       string // Caddy's site, e.g. http://127.0.0.1:1234
	caddyfile  string
	generation int // loads so far: see loadCaddy
	rdb        *redis.Client
	backend    *backend
}

func TestMain(m *testing.M) {
	code, err := setUp(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "clienttest:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

// setUp starts redis-server, the backend and Caddy, runs the tests and
// stops everything.
func setUp(m *testing.M) (code int, err error) {
	var stops []func() error
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			err = errors.Join(err, stops[i]())
		}
	}()

	redisPort, err := freePort()
	if err != nil {
		return 0, err
	}
	stopRedis, err := startRedis(redisPort)
	if err != nil {
		return 0, err
	}
	stops = append(stops, stopRedis)
	env.rdb = redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + redisPort})
	stops = append(stops, env.rdb.Close)

	b := newBackend()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: b.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	stops = append(stops, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	})
	env.backend = b

	// A Redis address nothing listens on: /dead/events always answers 503.
	deadPort, err := freePort()
	if err != nil {
		return 0, err
	}
	sitePort, err := freePort()
	if err != nil {
		return 0, err
	}
	storage, err := os.MkdirTemp("", "clienttest-caddy-")
	if err != nil {
		return 0, err
	}
	stops = append(stops, func() error { return os.RemoveAll(storage) })
	env.base = "http://127.0.0.1:" + sitePort
	env.caddyfile = caddyfile(sitePort, redisPort, deadPort, ln.Addr().String(), storage)
	if err := loadCaddy(); err != nil {
		return 0, err
	}
	stops = append(stops, caddy.Stop)

	return m.Run(), nil
}

// caddyfile is the site every test talks to. Short retry fields and auth
// timeouts keep the tests quick; `protocols h1` is the demo's set-up (and
// the handler's hijacked path).
func caddyfile(sitePort, redisPort, deadPort, backend, storage string) string {
	r := strings.NewReplacer("{site}", sitePort, "{redis}", "redis://127.0.0.1:"+redisPort,
		"{dead}", "redis://127.0.0.1:"+deadPort, "{backend}", backend, "{storage}", storage,
		"{auth}", "http://"+backend+"/auth", "{channel}", channel, "{stream}", streamKey, "{cookie}", cookie, "{control}", controlChannel)
	return r.Replace(`{
	admin off
	persist_config off
	auto_https off
	grace_period 1s
	log {
		level ERROR
	}
	servers {
		protocols h1
	}
	storage file_system {
		root {storage}
	}
}

http://127.0.0.1:{site} {
	metrics /metrics
	handle /events {
		notify {
			redis {redis}
			channel {channel}
			auth_url {auth}
			auth_timeout 500ms
			token_cookie {cookie}
			retry 200ms
			control_channel {control}
		}
	}
	handle /sevents {
		notify {
			redis {redis}
			stream {stream}
			auth_url {auth}
			auth_timeout 500ms
			token_cookie {cookie}
			retry 200ms
			history_entries {generation}
			reload_drain 0
		}
	}
	# Named events and groups, as the handler writes them.
	handle /nevents {
		notify {
			redis {redis}
			stream {stream}
			auth_url {auth}
			auth_timeout 500ms
			token_cookie {cookie}
			retry 200ms
			event_field type
			groups_field groups
		}
	}
	# A gate in front of the stream answers what a rate limiter or a proxy
	# would (429, 503 with Retry-After); replay_limit 2 makes resets easy.
	handle /gated/sevents {
		route {
			forward_auth {backend} {
				uri /gate
			}
			notify {
				redis {redis}
				stream {stream}
				auth_url {auth}
				auth_timeout 500ms
				token_cookie {cookie}
				retry 200ms
				replay_limit 2
				history_entries {generation}
				reload_drain 0
			}
		}
	}
	handle /dead/events {
		notify {
			redis {dead}
			channel {channel}
			auth_url {auth}
			token_cookie {cookie}
		}
	}
	# The backend's fake streams: a revoked frame, or silence.
	handle /fake/* {
		reverse_proxy {backend} {
			flush_interval -1
		}
	}
	reverse_proxy {backend}
}
`)
}

// loadCaddy (re)loads the site. Each load changes the history_entries of
// the stream-mode handlers (/sevents and /gated/sevents), a setting of
// their identity, so that a reload ends their open streams at once
// (reload_drain 0), as a deploy that changes them would.
func loadCaddy() error {
	env.generation++
	caddyfile := strings.ReplaceAll(env.caddyfile, "{generation}", strconv.Itoa(50000+env.generation))
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return fmt.Errorf("adapting the Caddyfile: %w", err)
	}
	if len(warnings) > 0 {
		return fmt.Errorf("Caddyfile warnings: %v", warnings)
	}
	return caddy.Load(cfg, true)
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// startRedis runs a real redis-server (stream mode needs XADD and XREAD)
// on port, and returns what stops it.
func startRedis(port string) (func() error, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is not installed (apt-get install -y redis-server): %w", err)
	}
	dir, err := os.MkdirTemp("", "clienttest-redis-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", "redis.log")
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	stop := func() error {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return os.RemoveAll(dir)
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c.Ping(context.Background()).Err() == nil {
			return stop, nil
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, errors.New("redis-server did not answer PING within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- the backend: page, client, auth API, gate, fake streams ----------------

// backend is the site's application behind Caddy. Tokens are "u:<user>"
// (valid unless a script says otherwise) or anything else (401).
type backend struct {
	mu    sync.Mutex
	auth  map[string][]step        // per user: what the next auth API calls answer
	gate  map[string][]step        // per user: what the next gate calls answer
	calls map[string][]call        // per user: auth API calls
	gates map[string][]call        // per user: gate calls
	fakes map[string]int           // per user: requests to the fake streams
	kill  map[string]chan struct{} // per user: closed to revoke the fake stream
	named map[string]*namedLog     // per user: what /fake/named serves
	slow  int                      // requests for harness.js that were held back
}

// step is one scripted answer: a status, with Retry-After (gate), or a
// delay before answering 200 (auth API, to make the handler time out).
type step struct {
	status     int
	retryAfter string
	delay      time.Duration
}

// call is one request the backend saw.
type call struct {
	at    time.Time
	token string
}

func newBackend() *backend {
	return &backend{auth: map[string][]step{}, gate: map[string][]step{}, calls: map[string][]call{},
		gates: map[string][]call{}, fakes: map[string]int{}, kill: map[string]chan struct{}{}, named: map[string]*namedLog{}}
}

func (b *backend) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFile(w, r, "testdata/harness.html")
	})
	mux.HandleFunc("GET /harness.js", func(w http.ResponseWriter, r *http.Request) {
		if !b.holdBack(w, r) {
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFile(w, r, "testdata/harness.js")
	})
	mux.HandleFunc("GET /notify.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, r, client.Files, "notify.js")
	})
	mux.HandleFunc("POST /refresh", b.refresh)
	mux.HandleFunc("GET /auth", b.authAPI)
	mux.HandleFunc("GET /gate", b.gateCheck)
	mux.HandleFunc("GET /fake/revoked", b.fakeRevoked)
	mux.HandleFunc("GET /fake/silent", b.fakeSilent)
	mux.HandleFunc("GET /fake/wire", b.fakeWire)
	mux.HandleFunc("GET /fake/named", b.fakeNamed)
	return mux
}

// holdBack delays harness.js for a page loaded with slow=<ms> (its Referer
// says so): the page has replaced the previous one (a reload has
// committed) but no client runs in it yet. False when the client left.
func (b *backend) holdBack(w http.ResponseWriter, r *http.Request) bool {
	ref, err := url.Parse(r.Header.Get("Referer"))
	if err != nil {
		return true
	}
	ms, err := strconv.Atoi(ref.Query().Get("slow"))
	if err != nil || ms <= 0 {
		return true
	}
	b.mu.Lock()
	b.slow++
	b.mu.Unlock()
	select {
	case <-time.After(time.Duration(ms) * time.Millisecond):
		return true
	case <-r.Context().Done():
		return false
	}
}

func (b *backend) slowLoads() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.slow
}

// userOf reads the user of a token.
func userOf(token string) (string, bool) {
	u, ok := strings.CutPrefix(token, "u:")
	return u, ok && u != ""
}

// tokenOf is the token of a request: bearer first, then the cookie.
func tokenOf(r *http.Request) string {
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return t
	}
	if c, err := r.Cookie(cookie); err == nil {
		return c.Value
	}
	return ""
}

// anyUser is the user a token names, valid or not ("bad:alice" → alice).
func anyUser(token string) string {
	_, u, _ := strings.Cut(token, ":")
	return u
}

// record logs a call with token in calls and returns the next scripted
// step for its user in script (the zero step when none is left).
func (b *backend) record(calls map[string][]call, script map[string][]step, token string) step {
	name := anyUser(token)
	b.mu.Lock()
	defer b.mu.Unlock()
	calls[name] = append(calls[name], call{at: time.Now(), token: token})
	var s step
	if q := script[name]; len(q) > 0 {
		s, script[name] = q[0], q[1:]
	}
	return s
}

// authAPI answers the notify handler: 200 {"user_id": ..., "groups": [...]} for u:<user>
// unless the user's script says otherwise, 401 for anything else.
func (b *backend) authAPI(w http.ResponseWriter, r *http.Request) {
	token := tokenOf(r)
	s := b.record(b.calls, b.auth, token)
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	user, ok := userOf(token)
	switch {
	case s.status != 0:
		w.WriteHeader(s.status)
		_, _ = w.Write([]byte(`{"detail":"scripted"}`))
	case !ok:
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"detail":"Invalid token"}`))
	default:
		// Each user is alone in the group team-<user> (used on /nevents).
		_ = json.NewEncoder(w).Encode(map[string]any{"user_id": user, "groups": []string{"team-" + user}})
	}
}

// gateCheck is forward_auth's upstream on /gated/sevents: 200 lets the
// request through, anything else is the client's answer.
func (b *backend) gateCheck(w http.ResponseWriter, r *http.Request) {
	s := b.record(b.gates, b.gate, tokenOf(r))
	if s.status == 0 {
		w.WriteHeader(http.StatusOK)
		return
	}
	if s.retryAfter != "" {
		w.Header().Set("Retry-After", s.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(s.status)
	_, _ = fmt.Fprintf(w, `{"error":"gate says %d"}`, s.status)
}

// refresh is what a session refresh does: a valid token in the cookie.
func (b *backend) refresh(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	http.SetCookie(w, &http.Cookie{Name: cookie, Value: "u:" + user, Path: "/", SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

// fakeRevoked answers as the handler will when it revokes a stream: an
// event stream that, once the test calls revoke, carries a `revoked`
// event and ends.
func (b *backend) fakeRevoked(w http.ResponseWriter, r *http.Request) {
	b.countFake(r)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write([]byte("retry: 100\n\n"))
	http.NewResponseController(w).Flush()
	select {
	case <-b.revokeSignal(anyUser(tokenOf(r))):
		_, _ = w.Write([]byte("event: revoked\ndata: {\"reason\":\"user_changed\"}\n\n"))
	case <-r.Context().Done():
	}
}

func (b *backend) revokeSignal(user string) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.kill[user]
	if !ok {
		c = make(chan struct{})
		b.kill[user] = c
	}
	return c
}

// revoke ends the user's fake streams with a revoked event.
func (b *backend) revoke(user string) { close(b.revokeSignal(user)) }

// fakeSilent opens an event stream and then sends nothing, not even a
// heartbeat: a connection that died without saying so.
func (b *backend) fakeSilent(w http.ResponseWriter, r *http.Request) {
	b.countFake(r)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write([]byte("retry: 100\n\n"))
	http.NewResponseController(w).Flush()
	<-r.Context().Done()
}

// wireChunks is an event stream written in awkward pieces: a byte order
// mark, comments, CRLF and lone CR line ends, a CRLF split between two
// writes, a multi-line data field, an id alone (a position), a field with
// no space after the colon.
var wireChunks = []string{
	"\ufeff: a comment\r\nretry: 100\r\n\r\nid: 1-1\r\ndata: {\"n\":\r",
	"\ndata: 1}\r\n\r\nid: 1-2\rdata: {\"n\": 2}\r\r",
	"id: 1-3\n",
	"\n",
	"data:{\"n\":3}\n\n",
}

// fakeWire sends wireChunks, each flushed on its own, then stays open.
func (b *backend) fakeWire(w http.ResponseWriter, r *http.Request) {
	b.countFake(r)
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	for _, c := range wireChunks {
		_, _ = w.Write([]byte(c))
		_ = rc.Flush()
		time.Sleep(20 * time.Millisecond) // so that the pieces arrive apart
	}
	<-r.Context().Done()
}

// namedLog is the history /fake/named serves a user: frame i is the entry
// with ID 1-<i+1>. grew is closed (and replaced) when frames are added.
type namedLog struct {
	frames []string
	grew   chan struct{}
}

// namedFrame is how the handler will write message n once `event_field
// type` is set: named after its type, or unnamed when it has none.
func namedFrame(n int, name string) string {
	data, _ := json.Marshal(map[string]any{"type": name, "n": n})
	if name == "" {
		data, _ = json.Marshal(map[string]any{"n": n})
	}
	f := fmt.Sprintf("id: 1-%d\n", n)
	if name != "" {
		f += "event: " + name + "\n"
	}
	return f + "data: " + string(data) + "\n\n"
}

// controlReset is the handler's own reset frame (sse.go) for entry n.
func controlReset(n int, reason string) string {
	return fmt.Sprintf("id: 1-%d\nevent: reset\ndata: {\"reason\":%q}\n\n", n, reason)
}

// appendNamed adds frames to user's history; the open /fake/named stream
// writes them at once.
func (b *backend) appendNamed(user string, frames ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.namedLogOf(user)
	l.frames = append(l.frames, frames...)
	close(l.grew)
	l.grew = make(chan struct{})
}

func (b *backend) namedLogOf(user string) *namedLog { // b.mu held
	l, ok := b.named[user]
	if !ok {
		l = &namedLog{grew: make(chan struct{})}
		b.named[user] = l
	}
	return l
}

// fakeNamed is an event stream in stream mode with named events, as the
// handler will write them (namedFrame): it writes the user's history after
// last_event_id (all of it without one), then each frame as it is added.
func (b *backend) fakeNamed(w http.ResponseWriter, r *http.Request) {
	b.countFake(r)
	user := anyUser(tokenOf(r))
	next := 0
	if last := r.URL.Query().Get("last_event_id"); last != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(last, "1-"))
		if err != nil {
			http.Error(w, "bad last_event_id", http.StatusBadRequest)
			return
		}
		next = n
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write([]byte("retry: 100\n\n"))
	rc := http.NewResponseController(w)
	for {
		b.mu.Lock()
		l := b.namedLogOf(user)
		frames, grew := l.frames[min(next, len(l.frames)):], l.grew
		b.mu.Unlock()
		for _, f := range frames {
			_, _ = w.Write([]byte(f))
		}
		next += len(frames)
		if rc.Flush() != nil {
			return
		}
		select {
		case <-grew:
		case <-r.Context().Done():
			return
		}
	}
}

func (b *backend) countFake(r *http.Request) {
	b.mu.Lock()
	b.fakes[anyUser(tokenOf(r))]++
	b.mu.Unlock()
}

func (b *backend) scriptAuth(user string, steps ...step) {
	b.mu.Lock()
	b.auth[user] = steps
	b.mu.Unlock()
}

func (b *backend) scriptGate(user string, steps ...step) {
	b.mu.Lock()
	b.gate[user] = steps
	b.mu.Unlock()
}

func (b *backend) authCalls(user string) []call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]call(nil), b.calls[user]...)
}

func (b *backend) gateCalls(user string) []call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]call(nil), b.gates[user]...)
}

func (b *backend) fakeCalls(user string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fakes[user]
}

// ---- Redis and metrics --------------------------------------------------------

// publish sends message n to user: PUBLISH in pub/sub mode, XADD in stream
// mode.
func publish(t testing.TB, stream bool, user string, n int) {
	t.Helper()
	if err := publishE(stream, user, n); err != nil {
		t.Fatal(err)
	}
}

// publishAfter publishes message n to user where nobody may listen any
// more (after a sign-out): pub/sub's count of receivers is not checked.
func publishAfter(t testing.TB, stream bool, user string, n int) {
	t.Helper()
	msg, _ := json.Marshal(map[string]any{"recipient_id": user, "n": n})
	var err error
	if stream {
		err = env.rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: streamKey, Values: []any{"data", msg}}).Err()
	} else {
		err = env.rdb.Publish(t.Context(), channel, msg).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func publishE(stream bool, user string, n int) error {
	msg, _ := json.Marshal(map[string]any{"recipient_id": user, "n": n})
	ctx := context.Background()
	if stream {
		if err := env.rdb.XAdd(ctx, &redis.XAddArgs{Stream: streamKey, Values: []any{"data", msg}}).Err(); err != nil {
			return fmt.Errorf("XADD: %w", err)
		}
		return nil
	}
	got, err := env.rdb.Publish(ctx, channel, msg).Result()
	if err != nil {
		return fmt.Errorf("PUBLISH: %w", err)
	}
	if got < 1 {
		return fmt.Errorf("PUBLISH %s reached no subscriber: the notify hub is not subscribed", msg)
	}
	return nil
}

// metric reads one sample from Caddy's metrics endpoint (0 when absent).
func metric(t testing.TB, sample string) float64 {
	t.Helper()
	resp, err := http.Get(env.base + "/metrics")
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && name == sample {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sample, err)
			}
			return v
		}
	}
	return 0
}

const (
	streamsOpen   = `caddy_notify_streams_open`
	streamsOpened = `caddy_notify_stream_requests_total{outcome="ok"}`
)

// waitUntil polls cond every 10ms for up to d.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
