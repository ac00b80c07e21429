package notify

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// redisServer is a real redis-server process owned by one test.
type redisServer struct {
	t        testing.TB
	port     int
	password string // from --requirepass, for the test's own clients
	args     []string
	cmd      *exec.Cmd
	done     chan struct{}
}

// newRedisServer prepares a redis-server on port without starting it: a
// test that needs Redis down at first calls start later. extra are further
// command-line options. The server is killed when the test ends.
func newRedisServer(t testing.TB, port int, extra ...string) *redisServer {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed (apt-get install -y redis-server): %v", err)
	}
	rs := &redisServer{t: t, port: port}
	for i, a := range extra {
		if a == "--requirepass" && i+1 < len(extra) {
			rs.password = extra[i+1]
		}
	}
	rs.args = append([]string{path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--logfile", "redis.log"}, extra...)
	t.Cleanup(rs.stop)
	return rs
}

// startRedis starts redis-server on a free loopback port; it is killed when
// the test ends. extra are further command-line options.
func startRedis(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	rs := newRedisServer(t, freePort(t), extra...)
	rs.start()
	return rs
}

func (rs *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(rs.port) }
func (rs *redisServer) URL() string  { return "redis://" + rs.Addr() }

func (rs *redisServer) start() {
	rs.t.Helper()
	rs.cmd = exec.Command(rs.args[0], rs.args[1:]...)
	if err := rs.cmd.Start(); err != nil {
		rs.t.Fatalf("starting redis-server: %v", err)
	}
	rs.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(rs.cmd, rs.done)
	c := rs.client()
	defer c.Close()
	waitFor(rs.t, 10*time.Second, "redis-server to answer PING", func() bool {
		return c.Ping(context.Background()).Err() == nil
	})
}

// stop kills the server; it may be started again on the same port.
func (rs *redisServer) stop() {
	if rs.cmd == nil {
		return
	}
	_ = rs.cmd.Process.Kill()
	<-rs.done
	rs.cmd = nil
}

func (rs *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: rs.Addr(), Password: rs.password, MaxRetries: -1})
}

// publish sends payload to channel and returns how many subscribers got it.
func (rs *redisServer) publish(t testing.TB, channel, payload string) int64 {
	t.Helper()
	c := rs.client()
	defer c.Close()
	n, err := c.Publish(context.Background(), channel, payload).Result()
	if err != nil {
		t.Fatalf("PUBLISH: %v", err)
	}
	return n
}

// authAPI is a stub of the site's auth API: it maps tokens to responses.
type authAPI struct {
	*httptest.Server
	calls   atomic.Int64
	mu      sync.Mutex
	lastReq http.Header
	remotes map[string]bool // client addresses seen: one per connection
	delay   time.Duration
	replies map[string]authReply
}

type authReply struct {
	status int
	body   string
}

func startAuthAPI(t testing.TB, replies map[string]authReply) *authAPI {
	t.Helper()
	a := &authAPI{replies: replies, remotes: map[string]bool{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.calls.Add(1)
		a.mu.Lock()
		a.lastReq = r.Header.Clone()
		a.remotes[r.RemoteAddr] = true
		delay := a.delay
		a.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		a.mu.Lock()
		rep, known := a.replies[token]
		a.mu.Unlock()
		if !ok || !known {
			rep = authReply{http.StatusUnauthorized, `{"detail":"Invalid token"}`}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	}))
	t.Cleanup(a.Close)
	return a
}

// setReply changes the answer for token from now on.
func (a *authAPI) setReply(token string, rep authReply) {
	a.mu.Lock()
	a.replies[token] = rep
	a.mu.Unlock()
}

func (a *authAPI) setDelay(d time.Duration) {
	a.mu.Lock()
	a.delay = d
	a.mu.Unlock()
}

// connections returns how many distinct connections reached the auth API.
func (a *authAPI) connections() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.remotes)
}

func (a *authAPI) lastHeaders() http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastReq
}

// users returns auth replies for tokens "<name>-token" → {"user_id": "<name>"}.
func users(names ...string) map[string]authReply {
	m := map[string]authReply{}
	for _, n := range names {
		m[n+"-token"] = authReply{200, fmt.Sprintf(`{"user_id":%q}`, n)}
	}
	return m
}

// loadCaddyfile adapts a Caddyfile and runs it in this process, replacing any
// config a previous call loaded. Caddy is stopped when the test ends.
func loadCaddyfile(t testing.TB, caddyfile string) {
	t.Helper()
	if err := tryLoadCaddyfile(caddyfile); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
}

// tryLoadCaddyfile is loadCaddyfile without the test: it reports errors, and
// refuses a config the adapter warned about (a test that expects a warning
// adapts the Caddyfile itself).
func tryLoadCaddyfile(caddyfile string) error {
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return fmt.Errorf("adapting: %w", err)
	}
	if len(warnings) > 0 {
		msgs := make([]string, len(warnings))
		for i, w := range warnings {
			msgs[i] = w.String()
		}
		return fmt.Errorf("adapter warnings:\n%s\nin:\n%s", strings.Join(msgs, "\n"), caddyfile)
	}
	return caddy.Load(cfg, true)
}

// runningHandlers returns the notify handlers of the running config, in
// route order, for a test to reach their state.
func runningHandlers(t testing.TB) []*Handler {
	t.Helper()
	return runningOf[*Handler](t)
}

// runningOf returns the handlers of type T of the running config, in route
// order, subroutes included.
func runningOf[T caddyhttp.MiddlewareHandler](t testing.TB) []T {
	t.Helper()
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		t.Fatalf("the running http app: %v", err)
	}
	var hs []T
	var walk func(caddyhttp.RouteList)
	walk = func(routes caddyhttp.RouteList) {
		for _, r := range routes {
			for _, mh := range r.Handlers {
				switch h := mh.(type) {
				case T:
					hs = append(hs, h)
				case *caddyhttp.Subroute:
					walk(h.Routes)
				}
			}
		}
	}
	for _, srv := range app.(*caddyhttp.App).Servers {
		walk(srv.Routes)
	}
	return hs
}

// caddyConfig is a Caddyfile with one HTTP site on 127.0.0.1 and the global
// options every test needs. routes, global and log are written as they stand
// in the file, indented with tabs; leading newlines and trailing blanks are
// dropped. In them, {redis} stands for the Redis server's URL, {auth} for the
// auth API's, and {name} for vars[name].
type caddyConfig struct {
	redis  *redisServer // nil: vars["redis"] gives {redis}
	auth   *authAPI
	routes string            // the site block's body
	global string            // further global options
	log    string            // the global log block's body; default: level ERROR
	vars   map[string]string // further placeholders
	// eternalGrace leaves grace_period unset: Caddy's default, which waits
	// for open streams forever.
	eternalGrace bool
	// autoHTTPS leaves automatic HTTPS on (it does nothing for an http://
	// site, but logs the whole adjusted config at debug level).
	autoHTTPS bool
	port      int // the site's port; load picks a free one when 0
}

// serve runs routes as a Caddy site on a free port, as caddyConfig describes,
// and returns its base URL.
func serve(t testing.TB, rs *redisServer, auth *authAPI, routes string) string {
	t.Helper()
	c := &caddyConfig{redis: rs, auth: auth, routes: routes}
	return c.load(t)
}

// load runs c in this process, replacing any config loaded before, and
// returns the site's base URL. Caddy is stopped when the test ends.
func (c *caddyConfig) load(t testing.TB) string {
	t.Helper()
	if c.port == 0 {
		c.port = freePort(t)
	}
	loadCaddyfile(t, c.caddyfile())
	return c.base()
}

// reload replaces the running config with c, as a config reload does.
func (c *caddyConfig) reload() error { return tryLoadCaddyfile(c.caddyfile()) }

func (c *caddyConfig) base() string { return fmt.Sprintf("http://127.0.0.1:%d", c.port) }

func (c *caddyConfig) caddyfile() string {
	vars := []string{"{auth}", c.auth.URL}
	if c.redis != nil { // else vars names {redis}, e.g. a cluster's URL
		vars = append(vars, "{redis}", c.redis.URL())
	}
	for name, v := range c.vars {
		vars = append(vars, "{"+name+"}", v)
	}
	expand := strings.NewReplacer(vars...).Replace
	var b strings.Builder
	b.WriteString("{\n\tadmin off\n\tpersist_config off\n")
	if !c.autoHTTPS {
		b.WriteString("\tauto_https off\n")
	}
	if !c.eternalGrace {
		b.WriteString("\tgrace_period 5s\n")
	}
	log := "\t\tlevel ERROR"
	if c.log != "" {
		log = block(c.log)
	}
	fmt.Fprintf(&b, "\tlog {\n%s\n\t}\n", expand(log))
	if c.global != "" {
		fmt.Fprintf(&b, "%s\n", expand(block(c.global)))
	}
	fmt.Fprintf(&b, "}\nhttp://127.0.0.1:%d {\n%s\n}\n", c.port, expand(block(c.routes)))
	return b.String()
}

// block trims a Caddyfile fragment written in a raw string literal.
func block(s string) string { return strings.TrimRight(strings.TrimLeft(s, "\n"), " \t\n") }

// frameKind says what a frame read from a stream is.
type frameKind int

const (
	frameEnd      frameKind = iota // the stream ended; there are no more frames
	frameRetry                     // the retry field
	frameComment                   // a comment, such as the heartbeat ": ping"
	framePosition                  // an id field alone: EventSource records it, dispatches nothing
	frameEvent                     // an event: data, with an id in stream mode and a name for resets
)

// sseEvent is one frame read from a stream: the fields of its kind are set.
type sseEvent struct {
	kind    frameKind
	id      string
	name    string // the event field, e.g. "reset"; "" for a message
	data    string
	comment string
	retry   string
}

func (e sseEvent) String() string {
	kind := [...]string{"end", "retry", "comment", "position", "event"}[e.kind]
	return fmt.Sprintf("%s{id:%q name:%q data:%q comment:%q retry:%q}", kind, e.id, e.name, e.data, e.comment, e.retry)
}

// sseStream is an open event stream.
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
	quit   chan struct{} // closed by close: the reader stops delivering
	once   sync.Once
	done   chan struct{} // closed when the body ends
	err    error         // why it ended; read after done
}

// request builds a GET with an optional bearer token.
func request(t testing.TB, url, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// streamClient has no overall timeout: streams are long-lived.
var streamClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// openStream performs req and expects 200 with an event stream.
func openStream(t testing.TB, req *http.Request) *sseStream {
	t.Helper()
	resp, err := streamClient.Do(req)
	if err != nil {
		t.Fatalf("opening stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("opening stream: status %d, body %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("Content-Type = %q, want text/event-stream", ct)
	}
	s := newSSEStream(resp)
	go s.read()
	t.Cleanup(func() { s.close(); <-s.done })
	return s
}

// newSSEStream starts reading resp's body. The buffer is large enough for a
// test to read one stream while another fills up.
func newSSEStream(resp *http.Response) *sseStream {
	return &sseStream{resp: resp, events: make(chan sseEvent, 16384), quit: make(chan struct{}), done: make(chan struct{})}
}

func (s *sseStream) close() {
	s.once.Do(func() { close(s.quit) })
	s.resp.Body.Close()
}

// read parses the SSE wire format (the subset the handler writes).
func (s *sseStream) read() {
	defer close(s.done)
	br := bufio.NewReader(s.resp.Body)
	var ev sseEvent
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			s.err = err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			switch {
			case ev.retry != "":
				ev.kind = frameRetry
			case ev.comment != "":
				ev.kind = frameComment
			case data != nil:
				ev.kind, ev.data = frameEvent, strings.Join(data, "\n")
			case ev.id != "":
				ev.kind = framePosition
			}
			if ev.kind != frameEnd {
				select {
				case s.events <- ev:
				case <-s.quit:
					return
				}
			}
			ev, data = sseEvent{}, nil
		case strings.HasPrefix(line, ":"):
			ev.comment = strings.TrimPrefix(line, ":")
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "data":
				data = append(data, value)
			case "id":
				ev.id = value
			case "event":
				ev.name = value
			case "retry":
				ev.retry = value
			}
		}
	}
}

// nextFrame returns the next frame of any kind; once the stream has ended
// and every frame before the end was read, a frame of kind frameEnd. It
// fails the test when nothing comes within timeout.
func (s *sseStream) nextFrame(t testing.TB, timeout time.Duration) sseEvent {
	t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case <-s.done:
		select { // frames parsed before the end come first
		case ev := <-s.events:
			return ev
		default:
			return sseEvent{kind: frameEnd}
		}
	case <-time.After(timeout):
		t.Fatalf("no frame within %s", timeout)
		return sseEvent{}
	}
}

// next returns the next event within timeout, passing over the retry field,
// comments and positions. It fails the test when the stream ends first.
func (s *sseStream) next(t testing.TB, timeout time.Duration) sseEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no event within %s", timeout)
		}
		switch ev := s.nextFrame(t, left); ev.kind {
		case frameEvent:
			return ev
		case frameEnd:
			t.Fatalf("stream ended while waiting for an event: %v", s.err)
		}
	}
}

// expect reads one frame for each of want and fails the test unless they
// are want, in order: a frame want does not list, a heartbeat too, fails it.
func (s *sseStream) expect(t testing.TB, want ...sseEvent) {
	t.Helper()
	for i, w := range want {
		if f := s.nextFrame(t, 5*time.Second); f != w {
			t.Fatalf("frame %d: got %+v, want %+v", i, f, w)
		}
	}
}

// collect reads data events until one whose data equals marker, and returns
// the data of those before it.
func (s *sseStream) collect(t testing.TB, marker string) []string {
	t.Helper()
	var got []string
	for {
		ev := s.next(t, 10*time.Second)
		if ev.data == marker {
			return got
		}
		got = append(got, ev.data)
	}
}

// waitEnded waits for the server to end the stream.
func (s *sseStream) waitEnded(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		t.Fatalf("stream still open after %s", timeout)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metricValue reads one sample from Caddy's metrics endpoint at url, e.g.
// `caddy_notify_dropped_total{reason="malformed"}`. Missing samples are 0.
func metricValue(t testing.TB, url, sample string) float64 {
	t.Helper()
	resp, err := http.Get(url)
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

// jsonBody decodes a JSON error body.
func jsonBody(t testing.TB, r io.Reader) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		t.Fatalf("decoding JSON body: %v", err)
	}
	return m
}
