package notify

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/testkit"
)

// Reloads, tried as operators do them: a Caddy process, its admin API's
// POST /load (with Cache-Control: must-revalidate, a forced reload of the
// same config, as `caddy reload --force` does), a real redis-server and an
// auth API that counts its calls.

// reloadProto is one way of opening a stream.
type reloadProto struct {
	name   string
	client *http.Client
	url    func(p *caddyProcess) string // the stream's URL
	major  int                          // the protocol version the response must have
}

// reloadProtos are HTTP/1.1 (taken over) and h2c on the plain site, and
// HTTP/1.1, HTTP/2 and HTTP/3 over TLS.
func reloadProtos(t *testing.T) []reloadProto {
	plainURL := func(p *caddyProcess) string { return p.base() + "/events" }
	tlsURL := func(p *caddyProcess) string { return fmt.Sprintf("https://127.0.0.1:%d/events", p.https) }
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	tlsConfig := &tls.Config{InsecureSkipVerify: true, ServerName: "127.0.0.1"} //nolint:gosec // Caddy's internal CA
	// A config each: the HTTP/2 transport adds h2 to its config's ALPN.
	h1TLS := &http.Transport{TLSClientConfig: tlsConfig.Clone(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	h2TLS := &http.Transport{TLSClientConfig: tlsConfig.Clone(), ForceAttemptHTTP2: true}
	h3 := &http3.Transport{TLSClientConfig: tlsConfig.Clone()}
	h2cTr := &http.Transport{Protocols: &h2c}
	t.Cleanup(func() {
		h1TLS.CloseIdleConnections()
		h2TLS.CloseIdleConnections()
		h2cTr.CloseIdleConnections()
		_ = h3.Close()
	})
	return []reloadProto{
		{"h1", testkit.StreamClient, plainURL, 1},
		{"h2c", &http.Client{Transport: h2cTr}, plainURL, 2},
		{"h1-tls", &http.Client{Transport: h1TLS}, tlsURL, 1},
		{"h2-tls", &http.Client{Transport: h2TLS}, tlsURL, 2},
		{"h3", &http.Client{Transport: h3}, tlsURL, 3},
	}
}

// reloadSites serves the same notify block on a plain site (HTTP/1.1 and
// h2c) and an https one (Caddy's internal CA, HTTP/1.1, HTTP/2, HTTP/3),
// with metrics at /metrics.
func reloadSites(notify string) string {
	return `
	metrics /metrics
	` + notify + `
}
https://127.0.0.1:{https_port} {
	tls internal
	` + notify
}

// reloadGlobal is what the reload tests' processes run with: h2c beside
// HTTP/1.1 on the plain site, and Caddy's default grace period (eternal).
const reloadGlobal = `
	skip_install_trust
	grace_period 0
	servers {
		protocols h1 h2 h2c h3
	}`

// startReloadCaddy starts a process for notify (a notify block, {redis} and
// {auth} expanded) and waits until both sites serve, the TLS one with its
// certificate.
func startReloadCaddy(t *testing.T, rs *testkit.Redis, auth *testkit.AuthAPI, notify string) *caddyProcess {
	t.Helper()
	p := newCaddyProcess(t, rs.URL(), auth.URL, reloadGlobal, reloadSites(notify))
	p.start()
	if err := p.waitUp("/events", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	probe := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // test CA
	t.Cleanup(probe.CloseIdleConnections)
	testkit.WaitFor(t, 30*time.Second, "the https site's certificate", func() bool {
		resp, err := (&http.Client{Transport: probe, Timeout: 2 * time.Second}).Get(fmt.Sprintf("https://127.0.0.1:%d/events", p.https))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized
	})
	return p
}

// openReloadStream opens user's stream with proto.
func openReloadStream(t *testing.T, p *caddyProcess, proto reloadProto, user string) *testkit.Stream {
	t.Helper()
	s := testkit.OpenStreamWith(t, proto.client, testkit.Request(t, proto.url(p), user+"-token"))
	if s.Resp.ProtoMajor != proto.major {
		t.Fatalf("%s: got %s", proto.name, s.Resp.Proto)
	}
	return s
}

// numberedPublisher publishes, to a channel or stream, each user's
// messages numbered from 1, round-robin, every interval: {"recipient_id":
// user, "n": n}. In stream mode it records each entry's ID.
type numberedPublisher struct {
	c      *redis.Client
	target string
	stream bool
	users  []string

	mu   sync.Mutex
	sent map[string]int
	ids  map[string][]string // stream mode: the entry IDs of each user's messages
	stop chan struct{}
	done chan struct{}
	err  error
}

func startNumberedPublisher(t *testing.T, rs *testkit.Redis, target string, stream bool, users []string, every time.Duration) *numberedPublisher {
	t.Helper()
	np := &numberedPublisher{c: rs.Client(), target: target, stream: stream, users: users,
		sent: map[string]int{}, ids: map[string][]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { np.halt(); np.c.Close() })
	go func() {
		defer close(np.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-np.stop:
				return
			case <-tick.C:
			}
			if err := np.publish(np.users[i%len(np.users)]); err != nil {
				np.err = err
				return
			}
		}
	}()
	return np
}

// publish sends user's next message.
func (np *numberedPublisher) publish(user string) error {
	np.mu.Lock()
	np.sent[user]++
	n := np.sent[user]
	np.mu.Unlock()
	msg := fmt.Sprintf(`{"recipient_id":%q,"n":%d}`, user, n)
	if !np.stream {
		return np.c.Publish(context.Background(), np.target, msg).Err()
	}
	id, err := np.c.XAdd(context.Background(), &redis.XAddArgs{Stream: np.target, Values: []any{"data", msg}}).Result()
	np.mu.Lock()
	np.ids[user] = append(np.ids[user], id)
	np.mu.Unlock()
	return err
}

// halt stops publishing and returns how many messages each user was sent.
func (np *numberedPublisher) halt() map[string]int {
	select {
	case <-np.stop:
	default:
		close(np.stop)
	}
	<-np.done
	np.mu.Lock()
	defer np.mu.Unlock()
	out := make(map[string]int, len(np.sent))
	for u, n := range np.sent {
		out[u] = n
	}
	return out
}

// checkNumbered reads s until it has received user's messages 1 to want,
// and fails the test on anything else: a gap, a duplicate, a message out of
// order or for someone else, the stream ending; in stream mode each
// event's id must be the entry's.
func checkNumbered(t *testing.T, name string, s *testkit.Stream, user string, want int, ids []string) {
	t.Helper()
	for next := 1; next <= want; {
		f := s.NextFrame(t, 10*time.Second)
		switch f.Kind {
		case testkit.FrameEnd:
			t.Errorf("%s: the stream ended after message %d of %d: %v", name, next-1, want, s.Err())
			return
		case testkit.FrameEvent:
		default:
			continue
		}
		var m struct {
			User string `json:"recipient_id"`
			N    int    `json:"n"`
		}
		if err := json.Unmarshal([]byte(f.Data), &m); err != nil || m.User != user || m.N != next {
			t.Errorf("%s: got %q, want %s's message %d", name, f.Data, user, next)
			return
		}
		if ids != nil && f.ID != ids[next-1] {
			t.Errorf("%s: message %d has id %q, want %q", name, next, f.ID, ids[next-1])
			return
		}
		next++
	}
}

// TestReloadKeepsStreams reloads the very same config (a forced reload)
// while messages are published at 100/s: every stream, on every protocol,
// stays open and receives exactly its messages, in order (in stream mode
// with their entry IDs, without a gap), and the auth API is not called.
func TestReloadKeepsStreams(t *testing.T) {
	for _, mode := range []string{"pubsub", "stream"} {
		t.Run(mode, func(t *testing.T) {
			rs := testkit.StartRedis(t)
			protos := reloadProtos(t)
			var names []string
			for _, p := range protos {
				names = append(names, p.name)
			}
			auth := testkit.StartAuthAPI(t, testkit.Users(names...))
			source := "channel reload"
			if mode == "stream" {
				source = "stream reload"
			}
			p := startReloadCaddy(t, rs, auth, fmt.Sprintf(`notify /events {
		redis {redis}
		auth_url {auth}
		%s
	}`, source))
			streams := map[string]*testkit.Stream{}
			for _, proto := range protos {
				streams[proto.name] = openReloadStream(t, p, proto, proto.name)
			}
			callsBefore := auth.Calls()
			pub := startNumberedPublisher(t, rs, "reload", mode == "stream", names, 10*time.Millisecond)
			time.Sleep(500 * time.Millisecond)
			reloaded := time.Now()
			if err := p.reload(); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(reloaded); d > 2*time.Second {
				t.Errorf("the reload took %s", d)
			}
			time.Sleep(1500 * time.Millisecond)
			sent := pub.halt()
			if pub.err != nil {
				t.Fatal(pub.err)
			}
			for _, proto := range protos {
				var ids []string
				if mode == "stream" {
					ids = pub.ids[proto.name]
				}
				checkNumbered(t, proto.name, streams[proto.name], proto.name, sent[proto.name], ids)
			}
			if calls := auth.Calls() - callsBefore; calls != 0 {
				t.Errorf("%d auth API calls after the streams opened, want 0", calls)
			}
			if kept := testkit.MetricValue(t, p.base()+"/metrics", "caddy_notify_streams_kept_total"); kept != float64(len(protos)) {
				t.Errorf("streams_kept_total %v, want %d", kept, len(protos))
			}
		})
	}
}

// pprofGoroutines reads the process's goroutine count from its admin API.
func (p *caddyProcess) goroutines() int {
	p.t.Helper()
	resp, err := p.http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/goroutine?debug=1", p.admin))
	if err != nil {
		p.t.Fatalf("goroutine profile: %v", err)
	}
	defer resp.Body.Close()
	var n int
	if _, err := fmt.Fscanf(resp.Body, "goroutine profile: total %d", &n); err != nil {
		p.t.Fatalf("goroutine profile: %v", err)
	}
	return n
}

// descriptors counts the process's open file descriptors.
func (p *caddyProcess) descriptors() int {
	p.t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		p.t.Fatalf("reading the descriptors: %v", err)
	}
	return len(entries)
}

// streamEnd is how and when a stream ended.
type streamEnd struct {
	name string
	at   time.Time
	err  error
}

// waitEnd reads s until it ends, within timeout, and reports when and how.
func waitEnd(t *testing.T, name string, s *testkit.Stream, timeout time.Duration) streamEnd {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f := s.NextFrame(t, time.Until(deadline))
		if f.Kind == testkit.FrameEnd {
			return streamEnd{name: name, at: time.Now(), err: s.Err()}
		}
	}
}

// TestReloadDrainsChangedStreams: a reload that changes the handler's
// channel ends its 40 streams, each cleanly (EOF, never a reset), spread
// over reload_drain 3s; the reload answers at once and the new config
// serves a new stream at once; the drain is counted.
func TestReloadDrainsChangedStreams(t *testing.T) {
	rs := testkit.StartRedis(t)
	protos := reloadProtos(t)
	var users []string
	for i := range 40 {
		users = append(users, "u"+strconv.Itoa(i))
	}
	auth := testkit.StartAuthAPI(t, testkit.Users(append(users, "late")...))
	notify := func(channel string) string {
		return `notify /events {
		redis {redis}
		auth_url {auth}
		channel ` + channel + `
		reload_drain 3s
	}`
	}
	p := startReloadCaddy(t, rs, auth, notify("a"))
	type open struct {
		name string
		s    *testkit.Stream
	}
	var streams []open
	for i, u := range users {
		proto := protos[i%len(protos)]
		streams = append(streams, open{proto.name + "/" + u, openReloadStream(t, p, proto, u)})
	}
	ends := make(chan streamEnd, len(streams))
	for _, o := range streams {
		go func() { ends <- waitEnd(t, o.name, o.s, 10*time.Second) }()
	}

	reloaded := time.Now()
	if err := p.reload(reloadSites(notify("b"))); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(reloaded); d > time.Second {
		t.Errorf("the reload answered after %s, want at once", d)
	}
	// The new config serves at once, on its new channel.
	late := openReloadStream(t, p, protos[0], "late")
	if d := time.Since(reloaded); d > 2*time.Second {
		t.Errorf("a new stream opened %s after the reload", d)
	}
	rs.Publish(t, "b", `{"recipient_id":"late","n":1}`)
	if ev := late.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"late","n":1}` {
		t.Errorf("the new stream got %+v", ev)
	}

	var first, last time.Time
	byHalfSecond := map[int]int{}
	for range streams {
		e := <-ends
		if e.err != io.EOF {
			t.Errorf("%s ended with %v, want a clean end (EOF)", e.name, e.err)
		}
		if first.IsZero() || e.at.Before(first) {
			first = e.at
		}
		if e.at.After(last) {
			last = e.at
		}
		byHalfSecond[int(e.at.Sub(reloaded)/(500*time.Millisecond))]++
	}
	if spread := last.Sub(first); spread < 2*time.Second {
		t.Errorf("the streams ended within %s of each other, want them spread over about 3s", spread)
	}
	if d := last.Sub(reloaded); d > 4500*time.Millisecond {
		t.Errorf("the last stream ended %s after the reload, want within reload_drain and a second", d)
	}
	for slot, n := range byHalfSecond {
		if n > 12 {
			t.Errorf("%d of 40 streams ended between %s and %s after the reload", n,
				time.Duration(slot)*500*time.Millisecond, time.Duration(slot+1)*500*time.Millisecond)
		}
	}
	if drained := testkit.MetricValue(t, p.base()+"/metrics", "caddy_notify_streams_drained_total"); drained != 40 {
		t.Errorf("streams_drained_total %v, want 40", drained)
	}
}

// TestReloadKeptThenDrained: streams kept by a reload of the same config
// end, spread over reload_drain, when a second reload changes their
// channel; then the process holds as many goroutines and descriptors as
// before the streams opened.
func TestReloadKeptThenDrained(t *testing.T) {
	rs := testkit.StartRedis(t)
	protos := reloadProtos(t)
	var names []string
	for _, p := range protos {
		names = append(names, p.name)
	}
	auth := testkit.StartAuthAPI(t, testkit.Users(names...))
	notify := func(channel string) string {
		return `notify /events {
		redis {redis}
		auth_url {auth}
		channel ` + channel + `
		reload_drain 1s
	}`
	}
	p := startReloadCaddy(t, rs, auth, notify("a"))
	goroutines, descriptors := p.goroutines(), p.descriptors()
	streams := map[string]*testkit.Stream{}
	for _, proto := range protos {
		streams[proto.name] = openReloadStream(t, p, proto, proto.name)
	}
	if err := p.reload(); err != nil {
		t.Fatal(err)
	}
	for _, proto := range protos {
		rs.Publish(t, "a", fmt.Sprintf(`{"recipient_id":%q}`, proto.name))
		if ev := streams[proto.name].Next(t, 5*time.Second); ev.Data != fmt.Sprintf(`{"recipient_id":%q}`, proto.name) {
			t.Fatalf("%s after the first reload: %+v", proto.name, ev)
		}
	}
	if err := p.reload(reloadSites(notify("b"))); err != nil {
		t.Fatal(err)
	}
	for name, s := range streams {
		if e := waitEnd(t, name, s, 5*time.Second); e.err != io.EOF {
			t.Errorf("%s ended with %v, want a clean end", name, e.err)
		}
	}
	for _, proto := range protos {
		if tr, ok := proto.client.Transport.(interface{ CloseIdleConnections() }); ok {
			tr.CloseIdleConnections()
		}
	}
	testkit.WaitFor(t, 10*time.Second, "goroutines and descriptors back to their level", func() bool {
		return p.goroutines() <= goroutines && p.descriptors() <= descriptors
	})
}

// TestReloadKeptStreamsKeepTheirControls: a stream a reload keeps goes on
// with its heartbeats, reauth, presence, control channel and limits, under
// the new config; a delivery setting the reload changes (heartbeat) applies
// to it from then on.
func TestReloadKeptStreamsKeepTheirControls(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice", "bob"))
	cfg := &caddyConfig{redis: rs, auth: auth, eternalGrace: true, vars: map[string]string{"heartbeat": "200ms"}, routes: `
	notify /events {
		redis {redis}
		auth_url {auth}
		heartbeat {heartbeat}
		reauth 300ms
		presence online
		presence_interval 300ms
		control_channel ctl
		max_streams_per_user 2
	}`}
	base := cfg.load(t) + "/events"
	alice := testkit.OpenStream(t, testkit.Request(t, base, "alice-token"))
	bob := testkit.OpenStream(t, testkit.Request(t, base, "bob-token"))
	for _, s := range []*testkit.Stream{alice, bob} {
		s.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
	}
	if err := cfg.reload(); err != nil {
		t.Fatal(err)
	}
	callsAfterReload := auth.Calls()
	// No extra frame: heartbeats go on, with the same config's interval.
	for _, s := range []*testkit.Stream{alice, bob} {
		if f := s.NextFrame(t, 2*time.Second); f.Kind != testkit.FrameComment || f.Comment != " ping" {
			t.Fatalf("after the reload: %+v, want a heartbeat", f)
		}
	}
	// Presence: still online three intervals later.
	time.Sleep(time.Second)
	if !isOnline(t, rs, "online", "alice") {
		t.Error("alice went offline across the reload")
	}
	// Limits: the kept stream counts.
	second := testkit.OpenStream(t, testkit.Request(t, base, "alice-token"))
	resp, err := testkit.StreamClient.Do(testkit.Request(t, base, "alice-token"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("alice's third stream: %d, want 429 (the kept one counts)", resp.StatusCode)
	}
	second.Close()
	// Reauth: bob's credentials are checked again, and revoked.
	if auth.Calls() == callsAfterReload {
		testkit.WaitFor(t, 2*time.Second, "a reauth check after the reload", func() bool { return auth.Calls() > callsAfterReload })
	}
	auth.SetReply("bob-token", testkit.AuthReply{Status: http.StatusUnauthorized, Body: `{}`})
	for {
		f := bob.NextFrame(t, 3*time.Second)
		if f.Kind == testkit.FrameEvent {
			if f.Name != "revoked" || f.Data != `{"reason":"unauthorized"}` {
				t.Errorf("bob got %+v, want revoked", f)
			}
			break
		}
	}
	// The control channel reaches the kept stream.
	rs.Publish(t, "ctl", `{"disconnect":"alice"}`)
	for {
		f := alice.NextFrame(t, 3*time.Second)
		if f.Kind == testkit.FrameEvent {
			if f.Name != "revoked" || f.Data != `{"reason":"disconnected"}` {
				t.Errorf("alice got %+v, want revoked", f)
			}
			break
		}
	}

	// A reload that turns heartbeats off keeps the stream, without them.
	carol := testkit.OpenStream(t, testkit.Request(t, base, "alice-token"))
	carol.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
	cfg.vars["heartbeat"] = "0"
	if err := cfg.reload(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a heartbeat under way may still come
	for len(carol.Frames()) > 0 {
		<-carol.Frames()
	}
	carol.Quiet(t, time.Second)
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","n":1}`)
	if ev := carol.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","n":1}` {
		t.Errorf("carol got %+v", ev)
	}
}

// TestReloadGracePeriod pins what Caddy does with kept streams when a
// finite grace_period runs out after a reload: its old HTTP/1.1 and HTTP/2
// servers only stop waiting for them, so they stay open; its old HTTP/3
// server closes its connections, which ends the HTTP/3 streams (their
// clients reconnect). With Caddy's default, an eternal grace period, every
// protocol's streams are kept (TestReloadKeepsStreams).
func TestReloadGracePeriod(t *testing.T) {
	rs := testkit.StartRedis(t)
	protos := reloadProtos(t)
	var names []string
	for _, p := range protos {
		names = append(names, p.name)
	}
	auth := testkit.StartAuthAPI(t, testkit.Users(names...))
	global := strings.Replace(reloadGlobal, "grace_period 0", "grace_period 500ms", 1)
	p := newCaddyProcess(t, rs.URL(), auth.URL, global, reloadSites(`notify /events {
		redis {redis}
		auth_url {auth}
	}`))
	p.start()
	if err := p.waitUp("/events", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "the https site's certificate", func() bool {
		resp, err := protos[2].client.Get(protos[2].url(p))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	streams := map[string]*testkit.Stream{}
	for _, proto := range protos {
		streams[proto.name] = openReloadStream(t, p, proto, proto.name)
		streams[proto.name].Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
	}
	if err := p.reload(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // past the grace period
	for _, proto := range protos {
		rs.Publish(t, defaultChannel, fmt.Sprintf(`{"recipient_id":%q}`, proto.name))
	}
	for _, proto := range protos {
		f := streams[proto.name].NextFrame(t, 5*time.Second)
		for f.Kind == testkit.FrameComment {
			f = streams[proto.name].NextFrame(t, 5*time.Second)
		}
		switch {
		case proto.name == "h3" && f.Kind != testkit.FrameEnd:
			t.Errorf("h3: %+v, want the stream ended by Caddy's HTTP/3 server at the grace period's end", f)
		case proto.name != "h3" && f.Data != fmt.Sprintf(`{"recipient_id":%q}`, proto.name):
			t.Errorf("%s: %+v (%v), want the stream kept", proto.name, f, streams[proto.name].Err())
		}
	}
}

// TestReloadsLeakNothing: 100 reloads in a row, alternating the same
// config and one whose channel changed (its streams drained, their clients
// reconnecting), leave the process with as many goroutines, descriptors,
// Redis connections and subscriptions, and about the memory it had.
func TestReloadsLeakNothing(t *testing.T) {
	rs := testkit.StartRedis(t)
	users := []string{"a", "b", "c", "d"}
	auth := testkit.StartAuthAPI(t, testkit.Users(users...))
	notify := func(channel string) string {
		return `notify /events {
		redis {redis}
		auth_url {auth}
		channel ` + channel + `
		reload_drain 50ms
	}`
	}
	p := startReloadCaddy(t, rs, auth, notify("x"))
	rc := rs.Client()
	t.Cleanup(func() { rc.Close() })
	caddyConns := func() int {
		list, _ := rc.ClientList(t.Context()).Result()
		return strings.Count(list, "name=caddy-notify")
	}
	protos := reloadProtos(t)
	// Clients that reconnect whenever their stream ends, until stopped.
	var wg sync.WaitGroup
	var quit chan struct{}
	startClients := func() {
		quit = make(chan struct{})
		for i, u := range users {
			proto := protos[i%2] // h1 and h2c
			wg.Go(func() {
				for {
					resp, err := proto.client.Do(testkit.Request(t, proto.url(p), u+"-token"))
					if err == nil {
						s := testkit.ReadStream(resp)
						select {
						case <-s.Done():
						case <-quit:
							s.Close()
							return
						}
					}
					select {
					case <-quit:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			})
		}
	}
	stopClients := func() {
		close(quit)
		wg.Wait()
		for _, proto := range protos {
			if tr, ok := proto.client.Transport.(interface{ CloseIdleConnections() }); ok {
				tr.CloseIdleConnections()
			}
		}
	}
	startClients()
	settle := func() (goroutines, descriptors, conns int, rss int64) {
		// Caddy keeps connections to the auth API alive, as many as
		// checks ran at once (at most auth_concurrency): not a leak.
		auth.CloseClientConnections()
		time.Sleep(500 * time.Millisecond)
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/statm", p.cmd.Process.Pid))
		var size, resident int64
		fmt.Sscanf(string(stat), "%d %d", &size, &resident)
		return p.goroutines(), p.descriptors(), caddyConns(), resident * int64(os.Getpagesize())
	}
	// A first round of each kind, so that what lives once per process
	// (the second channel's client, the TLS session cache) exists.
	for _, ch := range []string{"y", "x"} {
		if err := p.reload(reloadSites(notify(ch))); err != nil {
			t.Fatal(err)
		}
	}
	stopClients()
	g0, d0, c0, m0 := settle()
	startClients()
	channel := "x"
	for i := range 100 {
		routes := []string{}
		if i%2 == 1 {
			channel = map[string]string{"x": "y", "y": "x"}[channel]
			routes = append(routes, reloadSites(notify(channel)))
		}
		if err := p.reload(routes...); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	stopClients()
	// The drains of the last reloads end within reload_drain and their
	// old servers' connections close after them.
	deadline := time.Now().Add(10 * time.Second)
	g1, d1, c1, m1 := settle()
	for (g1 > g0 || d1 > d0) && time.Now().Before(deadline) {
		g1, d1, c1, m1 = settle()
	}
	t.Logf("goroutines %d → %d, descriptors %d → %d, Redis connections %d → %d, RSS %d → %d MiB", g0, g1, d0, d1, c0, c1, m0>>20, m1>>20)
	if g1 > g0 || d1 > d0 || c1 > c0 || m1 > m0+32<<20 {
		t.Errorf("after 100 reloads: goroutines %d (was %d), descriptors %d (was %d), Redis connections %d (was %d), RSS %d MiB (was %d)",
			g1, g0, d1, d0, c1, c0, m1>>20, m0>>20)
	}
	numsub, err := rc.PubSubNumSub(t.Context(), "x", "y").Result()
	if err != nil {
		t.Fatal(err)
	}
	if numsub[channel] != 1 || numsub[map[string]string{"x": "y", "y": "x"}[channel]] != 0 {
		t.Errorf("subscriptions %v, want 1 to %s only", numsub, channel)
	}
}

// TestReloadDuringResumeAndOutage: a forced reload while a stream resumes
// from Redis (stream mode), and reloads, the same and a changed one, while
// Redis is down: nothing is lost or repeated, and nothing hangs.
func TestReloadDuringResumeAndOutage(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice", "bob"))
	notify := func(extra string) string {
		return `notify /events {
		redis {redis}
		auth_url {auth}
		stream s
		history_entries 10
		replay_limit 100000
		reload_drain 500ms
		` + extra + `
	}`
	}
	p := startReloadCaddy(t, rs, auth, notify(""))
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	// 50,000 entries of alice's: a resume from the first reads them from
	// Redis, page after page, while the config is reloaded.
	pipe := c.Pipeline()
	var first, last string
	for i := 1; i <= 50_000; i++ {
		pipe.XAdd(t.Context(), &redis.XAddArgs{Stream: "s", Values: []any{"data", fmt.Sprintf(`{"recipient_id":"alice","n":%d}`, i)}})
		if i%5000 == 0 {
			cmds, err := pipe.Exec(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if first == "" {
				first = cmds[0].(*redis.StringCmd).Val()
			}
			last = cmds[len(cmds)-1].(*redis.StringCmd).Val()
		}
	}
	// Once the reader has read them: a resume racing the reader's catching
	// up would get the live entries in its queue meanwhile.
	waitReaderAt(t, p.base()+"/events", "bob-token", last)
	req := testkit.Request(t, p.base()+"/events", "alice-token")
	req.Header.Set("Last-Event-ID", first)
	resumed := make(chan *testkit.Stream, 1)
	go func() { resumed <- testkit.OpenStream(t, req) }()
	time.Sleep(50 * time.Millisecond)
	if err := p.reload(); err != nil {
		t.Fatal(err)
	}
	s := <-resumed
	for n := 2; n <= 50_000; n++ {
		if ev := s.Next(t, 10*time.Second); ev.Data != fmt.Sprintf(`{"recipient_id":"alice","n":%d}`, n) {
			t.Fatalf("got %.80q, want alice's %d", ev.Data, n)
		}
	}

	// Redis down: the same config, then one whose heartbeat changed,
	// reloaded at once; the streams are kept.
	bob := testkit.OpenStream(t, testkit.Request(t, p.base()+"/events", "bob-token"))
	bob.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
	position := bob.NextFrame(t, 5*time.Second)
	rs.Stop()
	for _, extra := range []string{"", "heartbeat 5s"} {
		start := time.Now()
		if err := p.reload(reloadSites(notify(extra))); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("a reload with Redis down took %s", d)
		}
	}
	rs.Start()
	id, err := c.XAdd(t.Context(), &redis.XAddArgs{Stream: "s", Values: []any{"data", `{"recipient_id":"bob","n":1}`}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ev := bob.Next(t, 15*time.Second); ev.ID != id || ev.Data != `{"recipient_id":"bob","n":1}` {
		t.Errorf("bob got %+v, want entry %s (its stream began at %s)", ev, id, position.ID)
	}
	noEvent(t, s, 500*time.Millisecond)
	// A reload that changes the handler's identity while Redis is down
	// drains the streams, and answers at once.
	rs.Stop()
	start := time.Now()
	if err := p.reload(reloadSites(notify("reauth 1m"))); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a reload with Redis down took %s", d)
	}
	bob.WaitEnded(t, 5*time.Second)
	s.WaitEnded(t, 5*time.Second)
}

// noEvent fails the test when s receives an event (heartbeats aside) or
// ends within d.
func noEvent(t *testing.T, s *testkit.Stream, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f := <-s.Frames():
			if f.Kind != testkit.FrameComment {
				t.Fatalf("got %+v, want nothing but heartbeats for %s", f, d)
			}
		case <-s.Done():
			t.Fatalf("the stream ended, want it open: %v", s.Err())
		case <-deadline:
			return
		}
	}
}

// TestExitEndsStreamsAtOnce: a process told to exit (SIGTERM, SIGINT, or
// the admin API's /stop, as `caddy stop` sends it) exits promptly, ending
// at once its streams: those of the running config, those a reload kept,
// and those a reload is draining over a long reload_drain.
func TestExitEndsStreamsAtOnce(t *testing.T) {
	for _, how := range []string{"SIGTERM", "SIGINT", "stop"} {
		t.Run(how, func(t *testing.T) {
			rs := testkit.StartRedis(t)
			auth := testkit.StartAuthAPI(t, testkit.Users("kept", "draining", "new"))
			notify := func(channel string) string {
				return `notify /events {
		redis {redis}
		auth_url {auth}
		channel ` + channel + `
		reload_drain 1m
	}`
			}
			p := startReloadCaddy(t, rs, auth, notify("a"))
			protos := reloadProtos(t)
			draining := openReloadStream(t, p, protos[1], "draining") // h2c
			if err := p.reload(); err != nil {
				t.Fatal(err)
			}
			kept := openReloadStream(t, p, protos[4], "kept") // h3
			if err := p.reload(reloadSites(notify("b"))); err != nil {
				t.Fatal(err)
			}
			fresh := openReloadStream(t, p, protos[0], "new") // h1
			start := time.Now()
			switch how {
			case "SIGTERM":
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
			case "SIGINT":
				_ = p.cmd.Process.Signal(syscall.SIGINT)
			case "stop":
				resp, err := p.http.Post(fmt.Sprintf("http://127.0.0.1:%d/stop", p.admin), "", nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			select {
			case <-p.exited:
			case <-time.After(5 * time.Second):
				t.Fatal("still running 5s after being told to exit")
			}
			t.Logf("exited %s after %s", how, time.Since(start).Round(time.Millisecond))
			p.cmd = nil
			for _, s := range []*testkit.Stream{draining, kept, fresh} {
				s.WaitEnded(t, 2*time.Second)
			}
		})
	}
}

// TestShutdownDelayKeepsStreams pins what Caddy's shutdown_delay does to
// streams when the process is told to exit: the config runs on through
// the delay (a load balancer polling a health check sees the instance
// leaving), its streams go on receiving, and they end when the delay is
// over, at once, as on any exit.
func TestShutdownDelayKeepsStreams(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	p := newCaddyProcess(t, rs.URL(), auth.URL, "shutdown_delay 2s", `
	notify /events {
		redis {redis}
		auth_url {auth}
		heartbeat 0
	}`)
	p.start()
	if err := p.waitUp("/events", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	s := openStreamWhenUp(t, p.base()+"/events", "alice-token", "")
	s.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(time.Second)
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","during":"delay"}`)
	s.Expect(t, testkit.Frame{Kind: testkit.FrameEvent, Data: `{"recipient_id":"alice","during":"delay"}`})
	s.WaitEnded(t, 5*time.Second)
	if d := time.Since(start); d < 2*time.Second || d > 3500*time.Millisecond {
		t.Errorf("the stream ended %s after SIGTERM, want at the end of the 2s delay", d)
	}
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5s after the delay")
	}
	p.cmd = nil
}
