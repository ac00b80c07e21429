package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redis/go-redis/v9"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"

	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/testkit"
	"github.com/caddy-notify/notify/publish"
)

// post sends body to url with the given Content-Type and returns the
// status, the body and the response's headers.
func post(t testing.TB, client *http.Client, url, contentType string, body io.Reader) (int, string, http.Header) {
	t.Helper()
	req := newRequest(t, http.MethodPost, url, contentType, body)
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// newRequest builds a request with an optional Content-Type.
func newRequest(t testing.TB, method, url, contentType string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// postJSON posts body as application/json.
func postJSON(t testing.TB, url, body string) (int, string) {
	t.Helper()
	status, got, _ := post(t, nil, url, "application/json", strings.NewReader(body))
	return status, got
}

// runningPublishHandlers returns the notify_publish handlers of the
// running config, in route order.
func runningPublishHandlers(t testing.TB) []*PublishHandler {
	t.Helper()
	return runningOf[*PublishHandler](t)
}

// TestPublishRefusals answers every refusal with its exact status, body and
// headers, counts it, and publishes nothing, not even the valid messages
// of a refused array.
func TestPublishRefusals(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify /events {
		redis {redis}
		auth_url {auth}
	}
	notify_publish /publish {
		redis {redis}
		max_message_size 100
	}`)
	stream := testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token"))
	url := base + "/publish"
	ok := `{"recipient_id":"alice"}`
	tooMany := "[" + strings.Repeat(ok+",", maxPublishBatch) + ok + "]"
	tests := []struct {
		name, method, contentType, body string
		status                          int
		want                            string
	}{
		{"GET", http.MethodGet, "", "", 405, "Method not allowed."},
		{"PUT", http.MethodPut, "application/json", ok, 405, "Method not allowed."},
		{"no content type", http.MethodPost, "", ok, 415, "Content-Type must be application/json."},
		{"text", http.MethodPost, "text/plain", ok, 415, "Content-Type must be application/json."},
		{"latin-1", http.MethodPost, "application/json; charset=iso-8859-1", ok, 415, "Content-Type must be application/json."},
		{"empty", http.MethodPost, "application/json", "", 400, "Malformed message."},
		{"truncated", http.MethodPost, "application/json", `{"recipient_id":"alice"`, 400, "Malformed message."},
		{"not an object", http.MethodPost, "application/json", `"alice"`, 400, "Malformed message."},
		{"two objects", http.MethodPost, "application/json", ok + ok, 400, "Malformed message."},
		{"no recipient", http.MethodPost, "application/json", `{"text":"hi"}`, 400, "Message has no recipient and no group."},
		{"empty recipients", http.MethodPost, "application/json", `{"recipient_id":[null,""]}`, 400, "Message has no recipient and no group."},
		{"invalid recipient", http.MethodPost, "application/json", `{"recipient_id":4.2}`, 400, "Invalid recipient."},
		{"lone surrogate", http.MethodPost, "application/json", `{"recipient_id":"\ud800"}`, 400, "Invalid recipient."},
		{"array: malformed", http.MethodPost, "application/json", "[" + ok + ",1]", 400, "Message 1: Malformed message."},
		{"array: no recipient", http.MethodPost, "application/json", "[" + ok + ",{}]", 400, "Message 1: Message has no recipient and no group."},
		{"array: invalid recipient", http.MethodPost, "application/json", "[" + ok + "," + ok + "," + ok + `,{"recipient_id":true}]`, 400, "Message 3: Invalid recipient."},
		{"array: trailing comma", http.MethodPost, "application/json", "[" + ok + ",]", 400, "Message 1: Malformed message."},
		{"array: no comma", http.MethodPost, "application/json", "[" + ok + " " + ok + "]", 400, "Message 0: Malformed message."},
		{"array: unterminated", http.MethodPost, "application/json", "[" + ok, 400, "Message 0: Malformed message."},
		{"array: more after it", http.MethodPost, "application/json", "[" + ok + "]x", 400, "Malformed message."},
		{"too large", http.MethodPost, "application/json", `{"recipient_id":"alice","pad":"` + strings.Repeat("x", 100) + `"}`, 413, "Message too large."},
		{"array: too large", http.MethodPost, "application/json", "[" + ok + `,{"recipient_id":"alice","pad":"` + strings.Repeat("x", 100) + `"}]`, 413, "Message 1: Message too large."},
		{"array: too many", http.MethodPost, "application/json", tooMany, 413, "Too many messages: at most 1000."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outcome := publishedTotal.WithLabelValues(fmt.Sprint(tt.status))
			before := testutil.ToFloat64(outcome)
			resp, err := http.DefaultClient.Do(newRequest(t, tt.method, url, tt.contentType, strings.NewReader(tt.body)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := jsonBody(t, resp.Body)["error"]; got != tt.want {
				t.Errorf("error %q, want %q", got, tt.want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if allow := resp.Header.Get("Allow"); (tt.status == 405) != (allow == "POST") {
				t.Errorf("Allow %q", allow)
			}
			if got := testutil.ToFloat64(outcome); got != before+1 {
				t.Errorf("caddy_notify_published_total{outcome=%q} went from %v to %v, want +1", fmt.Sprint(tt.status), before, got)
			}
		})
	}
	// Nothing of the above reached the stream: the next event is this one.
	okBefore := testutil.ToFloat64(publishedTotal.WithLabelValues("ok"))
	if status, body := postJSON(t, url, `{"recipient_id":"alice","n":"last"}`); status != 202 || body != "{\"receivers\":1}\n" {
		t.Fatalf("a valid message: %d %q", status, body)
	}
	if ev := stream.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice","n":"last"}` {
		t.Fatalf("the stream got %q first: a refused request published", ev.Data)
	}
	if got := testutil.ToFloat64(publishedTotal.WithLabelValues("ok")); got != okBefore+1 {
		t.Errorf("ok went from %v to %v, want +1", okBefore, got)
	}

	// Redis down: 503 with Retry-After, counted.
	rs.Stop()
	before := testutil.ToFloat64(publishedTotal.WithLabelValues("503"))
	status, body, hdr := post(t, nil, url, "application/json", strings.NewReader(ok))
	if status != 503 || body != "{\"error\":\"Redis is unavailable.\"}\n" || hdr.Get("Retry-After") != "1" {
		t.Errorf("Redis down: %d %q, Retry-After %q", status, body, hdr.Get("Retry-After"))
	}
	if got := testutil.ToFloat64(publishedTotal.WithLabelValues("503")); got != before+1 {
		t.Errorf("503 went from %v to %v, want +1", before, got)
	}
}

// TestPublishDelivers posts single messages and arrays to notify_publish
// in each mode, and checks that the notify streams of the same settings
// get exactly what was posted, once, in order: pub/sub, pub/sub with
// partitions and sharded, and stream mode with partitions (whose answer
// lists the entry IDs the streams then carry).
func TestPublishDelivers(t *testing.T) {
	rs := testkit.StartRedis(t)
	names := []string{"alice", "bob", "carol", "dave", "42"}
	auth := testkit.StartAuthAPI(t, testkit.Users(names...))
	modes := []struct{ name, settings string }{
		{"pubsub", "channel plain"},
		{"sharded16", "channel sh\n\t\tsharded\n\t\tpartitions 16"},
		{"stream8", "stream st\n\t\tpartitions 8"},
	}
	routes := ""
	for _, m := range modes {
		routes += fmt.Sprintf(`
	notify /%[1]s/events {
		redis {redis}
		auth_url {auth}
		broadcast
		%[2]s
	}
	notify_publish /%[1]s/publish {
		redis {redis}
		%[2]s
	}`, m.name, m.settings)
	}
	base := serve(t, rs, auth, routes)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			streams := map[string]*testkit.Stream{}
			for _, n := range names {
				streams[n] = testkit.OpenStream(t, testkit.Request(t, base+"/"+m.name+"/events", n+"-token"))
			}
			url := base + "/" + m.name + "/publish"
			var want = map[string][]string{}
			var posted []string
			add := func(msg string, to ...string) {
				posted = append(posted, msg)
				for _, u := range to {
					want[u] = append(want[u], msg)
				}
			}
			// One message, then an array in one request: named, several,
			// numeric, broadcast.
			one := `{"recipient_id":"alice","n":0}`
			add(one, "alice")
			status, body := postJSON(t, url, one)
			if status != 202 {
				t.Fatalf("single: %d %s", status, body)
			}
			batch := []string{
				`{"recipient_id":["bob","carol"],"n":1}`,
				`{"recipient_id":42,"n":2}`,
				`{"recipient_id":"*","n":3}`,
				`{"recipient_id":["alice","dave","alice"],"n":4}`,
			}
			add(batch[0], "bob", "carol")
			add(batch[1], "42")
			add(batch[2], names...)
			add(batch[3], "alice", "dave")
			status, body2 := postJSON(t, url, "[\n"+strings.Join(batch, ",\n")+"\n]")
			if status != 202 {
				t.Fatalf("array: %d %s", status, body2)
			}
			marker := `{"recipient_id":"*","n":"end"}`
			if status, body := postJSON(t, url, marker); status != 202 {
				t.Fatalf("marker: %d %s", status, body)
			}
			var ids []string
			for _, n := range names {
				var got []string
				for {
					ev := streams[n].Next(t, 5*time.Second)
					if ev.Data == marker {
						break
					}
					got = append(got, ev.Data)
					ids = append(ids, ev.ID)
				}
				if !slices.Equal(got, want[n]) {
					t.Errorf("%s got %q, want %q", n, got, want[n])
				}
			}
			if !strings.HasPrefix(m.settings, "stream") {
				// Pub/sub: each copy reached one subscriber, the handler.
				copies := len(publish.Partitions([]string{"alice"}, 16))
				if body != fmt.Sprintf("{\"receivers\":%d}\n", copies) {
					t.Errorf("single answer %q", body)
				}
				return
			}
			// Stream mode: the IDs answered are the entries written (one
			// per partition of a message), and the streams carry them.
			var answered struct{ IDs []string }
			for _, b := range []string{body, body2} {
				var a struct{ IDs []string }
				if err := jsonDecode(b, &a); err != nil {
					t.Fatal(err)
				}
				answered.IDs = append(answered.IDs, a.IDs...)
			}
			wantEntries := 0
			for _, msg := range posted {
				route, _ := message.Parse([]byte(msg), message.Fields{Recipient: "recipient_id"})
				users := route.Users
				if route.Broadcast {
					users = append(users, publish.Broadcast)
				}
				wantEntries += len(publish.Partitions(users, 8))
			}
			if len(answered.IDs) != wantEntries {
				t.Errorf("%d IDs answered, want %d (one per entry written)", len(answered.IDs), wantEntries)
			}
			for _, id := range ids {
				if !slices.Contains(answered.IDs, id) {
					t.Errorf("a stream got entry %s, which no answer named", id)
				}
			}
		})
	}
}

// jsonDecode decodes a JSON answer.
func jsonDecode(body string, v any) error {
	return json.NewDecoder(strings.NewReader(body)).Decode(v)
}

// TestPublishLimitsMatchTheReaders publishes messages of exactly
// max_message_size (pub/sub) and of max_message_size less the stream
// field's name (stream mode), which notify delivers, and refuses one byte
// more, which notify would drop as too_large: what notify_publish accepts
// is what the readers deliver.
func TestPublishLimitsMatchTheReaders(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify /ps/events {
		redis {redis}
		auth_url {auth}
		max_message_size 100
	}
	notify_publish /ps/publish {
		redis {redis}
		max_message_size 100
	}
	notify /st/events {
		redis {redis}
		auth_url {auth}
		stream st
		stream_field body
		max_message_size 100
	}
	notify_publish /st/publish {
		redis {redis}
		stream st
		stream_field body
		max_message_size 100
	}`)
	tooLarge := notifyMetrics.Drops.WithLabelValues(string(message.TooLarge))
	for mode, size := range map[string]int{"ps": 100, "st": 100 - len("body")} {
		s := testkit.OpenStream(t, testkit.Request(t, base+"/"+mode+"/events", "alice-token"))
		msg := func(n int) string {
			m := `{"recipient_id":"alice","pad":"`
			return m + strings.Repeat("x", n-len(m)-2) + `"}`
		}
		dropped := testutil.ToFloat64(tooLarge)
		if status, body := postJSON(t, base+"/"+mode+"/publish", msg(size+1)); status != 413 {
			t.Errorf("%s: %d bytes: %d %s, want 413", mode, size+1, status, body)
		}
		if status, body := postJSON(t, base+"/"+mode+"/publish", msg(size)); status != 202 {
			t.Errorf("%s: %d bytes: %d %s, want 202", mode, size, status, body)
		}
		if ev := s.Next(t, 5*time.Second); ev.Data != msg(size) {
			t.Errorf("%s: delivered %q", mode, ev.Data)
		}
		if got := testutil.ToFloat64(tooLarge); got != dropped {
			t.Errorf("%s: too_large drops went from %v to %v", mode, dropped, got)
		}
	}
}

// endless is a body of n bytes: head, then the byte fill. It allocates
// nothing per read, and counts what was read from it (atomically: the
// transport may go on reading after the answer came).
type endless struct {
	head   []byte
	fill   byte
	n      int64
	served atomic.Int64
}

func (e *endless) Read(p []byte) (int, error) {
	served := e.served.Load()
	if served >= e.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), e.n-served)]
	i := 0
	for ; i < len(p) && served+int64(i) < int64(len(e.head)); i++ {
		p[i] = e.head[served+int64(i)]
	}
	for ; i < len(p); i++ {
		p[i] = e.fill
	}
	e.served.Add(int64(len(p)))
	return len(p), nil
}

// TestPublishRefusesHugeBodiesUnread posts 100 MB bodies, one message and
// one array element, with and without Content-Length: each gets 413 having
// read a small part of the body, and the process's allocations stay far
// below its size.
func TestPublishRefusesHugeBodiesUnread(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify_publish /publish {
		redis {redis}
	}`)
	const size = 100 << 20
	for _, tt := range []struct {
		name          string
		head          string
		contentLength bool
		want          string
	}{
		{"object with Content-Length", `{"recipient_id":"alice","pad":"`, true, "Message too large."},
		{"object, chunked", `{"recipient_id":"alice","pad":"`, false, "Message too large."},
		{"array element, chunked", `[{"recipient_id":"alice"},{"recipient_id":"alice","pad":"`, false, "Message 1: Message too large."},
		{"spaces, chunked", ` `, false, "Message too large."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := &endless{head: []byte(tt.head), fill: 'x', n: size}
			if tt.name == "spaces, chunked" {
				body.fill = ' '
			}
			var reader io.Reader = body
			if !tt.contentLength {
				reader = struct{ io.Reader }{body} // hides the length
			}
			req := newRequest(t, http.MethodPost, base+"/publish", "application/json", reader)
			if tt.contentLength {
				req.ContentLength = size
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
			if err != nil {
				t.Fatalf("%v (after sending %d bytes)", err, body.served.Load())
			}
			defer resp.Body.Close()
			runtime.ReadMemStats(&after)
			if resp.StatusCode != 413 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := jsonBody(t, resp.Body)["error"]; got != tt.want {
				t.Errorf("error %q, want %q", got, tt.want)
			}
			sent := body.served.Load()
			if sent > 16<<20 {
				t.Errorf("the client sent %d MiB of the body before the answer", sent>>20)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
				t.Errorf("the request allocated %d MiB", alloc>>20)
			}
			t.Logf("sent %.1f MiB of 100 before the 413; %.1f MiB allocated meanwhile", float64(sent)/(1<<20),
				float64(after.TotalAlloc-before.TotalAlloc)/(1<<20))
		})
	}
}

// TestPublishBehindCaddyAuth puts notify_publish behind each of the three
// shapes the README shows (basic_auth, a remote_ip matcher, forward_auth)
// and checks that a request they refuse publishes nothing and one they let
// through publishes.
func TestPublishBehindCaddyAuth(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	auth.SetReply("publisher-token", testkit.AuthReply{Status: 200, Body: `{"user_id":"backend"}`})
	hash, err := bcryptHash("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &caddyConfig{redis: rs, auth: auth, vars: map[string]string{"hash": hash, "authhost": strings.TrimPrefix(auth.URL, "http://")}, routes: `
	notify /events {
		redis {redis}
		auth_url {auth}
	}
	route /basic {
		basic_auth {
			backend {hash}
		}
		notify_publish {
			redis {redis}
		}
	}
	@local {
		path /local
		remote_ip 127.0.0.1/32
	}
	handle @local {
		notify_publish {
			redis {redis}
		}
	}
	handle /local {
		respond "Forbidden." 403
	}
	route /forward {
		forward_auth {authhost} {
			uri /check
		}
		notify_publish {
			redis {redis}
		}
	}`}
	base := cfg.load(t)
	s := testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token"))
	from2 := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	msg := func(tag string) string { return fmt.Sprintf(`{"recipient_id":"alice","via":%q}`, tag) }
	for _, tt := range []struct {
		name   string
		path   string
		client *http.Client
		header [2]string
		status int
	}{
		{"basic_auth: none", "/basic", nil, [2]string{}, 401},
		{"basic_auth: wrong password", "/basic", nil, [2]string{"Authorization", basicAuth("backend", "guess")}, 401},
		{"basic_auth", "/basic", nil, [2]string{"Authorization", basicAuth("backend", "s3cret")}, 202},
		{"remote_ip: another address", "/local", from2, [2]string{}, 403},
		{"remote_ip", "/local", nil, [2]string{}, 202},
		{"forward_auth: none", "/forward", nil, [2]string{}, 401},
		{"forward_auth: unknown token", "/forward", nil, [2]string{"Authorization", "Bearer nobody"}, 401},
		{"forward_auth", "/forward", nil, [2]string{"Authorization", "Bearer publisher-token"}, 202},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, http.MethodPost, base+tt.path, "application/json", strings.NewReader(msg(tt.name)))
			if tt.header[0] != "" {
				req.Header.Set(tt.header[0], tt.header[1])
			}
			client := tt.client
			if client == nil {
				client = http.DefaultClient
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status != 202 {
				return
			}
			// The stream's next event is this one: none of the refused
			// requests before it published.
			if ev := s.Next(t, 5*time.Second); ev.Data != msg(tt.name) {
				t.Errorf("the stream got %q, want %q", ev.Data, msg(tt.name))
			}
		})
	}
}

// TestPublishSharesTheClient checks that a notify and a notify_publish
// handler with the same Redis settings share one go-redis client (one
// connection pool), in pub/sub and in stream mode with partitions, that a
// reload keeping the settings keeps it, and that it closes with its last
// user.
func TestPublishSharesTheClient(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	cfg := &caddyConfig{redis: rs, auth: auth, vars: map[string]string{"n": "1"}, routes: `
	notify /ps/events {
		redis {redis}
		auth_url {auth}
	}
	notify_publish /ps/publish {
		redis {redis}
		channel other
	}
	notify /st/events {
		redis {redis}
		auth_url {auth}
		stream st
		partitions 4
	}
	notify_publish /st/publish {
		redis {redis}
		stream st
		partitions 4
		stream_maxlen {n}
	}`}
	base := cfg.load(t)
	pooled := clients.len
	check := func() [2]redis.UniversalClient {
		t.Helper()
		hs, ps := runningHandlers(t), runningPublishHandlers(t)
		if len(hs) != 2 || len(ps) != 2 {
			t.Fatalf("%d notify and %d notify_publish handlers", len(hs), len(ps))
		}
		for i := range hs {
			if clientOf(hs[i]) != ps[i].run.pub.Client {
				t.Errorf("handler pair %d: notify and notify_publish have different clients", i)
			}
		}
		if clientOf(hs[0]) == clientOf(hs[1]) {
			t.Error("the pub/sub handlers and the partitioned stream share a client sized for neither")
		}
		if n := pooled(); n != 2 {
			t.Errorf("%d clients in the pool, want 2", n)
		}
		return [2]redis.UniversalClient{clientOf(hs[0]), clientOf(hs[1])}
	}
	first := check()
	// Both publish and deliver through it.
	for _, mode := range []string{"ps", "st"} {
		s := testkit.OpenStream(t, testkit.Request(t, base+"/"+mode+"/events", "alice-token"))
		url := base + "/" + mode + "/publish"
		if mode == "ps" {
			// The publisher's channel is another: publish to the
			// stream's through a second handler would be a config
			// mistake; here it only shows the client is shared.
			if status, body := postJSON(t, url, `{"recipient_id":"alice"}`); status != 202 || body != "{\"receivers\":0}\n" {
				t.Errorf("ps: %d %s", status, body)
			}
			continue
		}
		if status, body := postJSON(t, url, `{"recipient_id":"alice"}`); status != 202 {
			t.Errorf("st: %d %s", status, body)
		}
		if ev := s.Next(t, 5*time.Second); ev.Data != `{"recipient_id":"alice"}` {
			t.Errorf("st: got %q", ev.Data)
		}
	}
	// A reload that changes a setting of notify_publish only keeps the
	// clients.
	cfg.vars["n"] = "2"
	if err := cfg.reload(); err != nil {
		t.Fatal(err)
	}
	if again := check(); again != first {
		t.Error("a reload with the same Redis settings made new clients")
	}
	// A config without them closes them.
	cfg.routes = "\trespond \"nothing\""
	if err := cfg.reload(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the clients to leave the pool", func() bool { return pooled() == 0 })
	for _, c := range first {
		if err := c.Ping(t.Context()).Err(); !errors.Is(err, redis.ErrClosed) {
			t.Errorf("a released client answers %v, want redis.ErrClosed", err)
		}
	}
}

// basicAuth is the Authorization header of HTTP basic authentication.
func basicAuth(user, password string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, password)
	return req.Header.Get("Authorization")
}

// bcryptHash hashes password as `caddy hash-password` does.
func bcryptHash(password string) (string, error) {
	h, err := caddyauth.BcryptHash{}.Hash([]byte(password))
	return string(h), err
}
