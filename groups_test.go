package notify

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/testkit"
	"github.com/caddy-notify/notify/publish"
)

// groupUsers answers for "<name>-token" with the user and the groups given
// (a JSON value, or "" for no groups field).
func groupUsers(users map[string]string) map[string]testkit.AuthReply {
	m := map[string]testkit.AuthReply{}
	for name, groups := range users {
		body := fmt.Sprintf(`{"user_id":%q}`, name)
		if groups != "" {
			body = fmt.Sprintf(`{"user_id":%q,"groups":%s}`, name, groups)
		}
		m[name+"-token"] = testkit.AuthReply{Status: http.StatusOK, Body: body}
	}
	return m
}

// openReady opens a pub/sub stream and reads its retry frame.
func openReady(t *testing.T, url, token string) *testkit.Stream {
	t.Helper()
	s := openStreamWhenUp(t, url, token, "")
	s.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
	return s
}

// TestGroupDelivery: a message to a group reaches exactly the streams of its
// members, each once however many ways it names them; a message to a group
// nobody is in reaches nobody; users without groups get what names them.
func TestGroupDelivery(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, groupUsers(map[string]string{
		"alice": `["org:7","admins"]`, "bob": `["org:7"]`, "carol": `["org:8"]`, "dave": "", "erin": "null",
	}))
	base := serve(t, rs, auth, `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		groups_field groups
		heartbeat 0
	}`)
	deliveries := testkit.MetricValue(t, base+"/metrics", `caddy_notify_deliveries_total`)
	users := []string{"alice", "alice", "bob", "carol", "dave", "erin"}
	streams := make([]*testkit.Stream, len(users))
	for i, u := range users {
		streams[i] = openReady(t, base+"/events", u+"-token")
	}
	for _, m := range []string{
		`{"groups":"org:7","n":1}`,
		`{"groups":["org:7","admins","org:7"],"recipient_id":["alice","carol"],"n":2}`,
		`{"groups":"org:9","n":3}`,
		`{"groups":[],"recipient_id":"dave","n":4}`,
		`{"groups":"admins","recipient_id":"erin","n":5}`,
		`{"groups":"ORG:7","n":6}`, // names are compared byte for byte
		`{"recipient_id":["alice","bob","carol","dave","erin"],"end":1}`,
	} {
		rs.Publish(t, defaultChannel, m)
	}
	want := map[string][]string{
		"alice": {`{"groups":"org:7","n":1}`, `{"groups":["org:7","admins","org:7"],"recipient_id":["alice","carol"],"n":2}`,
			`{"groups":"admins","recipient_id":"erin","n":5}`},
		"bob":   {`{"groups":"org:7","n":1}`, `{"groups":["org:7","admins","org:7"],"recipient_id":["alice","carol"],"n":2}`},
		"carol": {`{"groups":["org:7","admins","org:7"],"recipient_id":["alice","carol"],"n":2}`},
		"dave":  {`{"groups":[],"recipient_id":"dave","n":4}`},
		"erin":  {`{"groups":"admins","recipient_id":"erin","n":5}`},
	}
	for i, u := range users {
		if got := streams[i].Collect(t, `{"recipient_id":["alice","bob","carol","dave","erin"],"end":1}`); !slices.Equal(got, want[u]) {
			t.Errorf("stream %d of %s got\n%q\nwant\n%q", i, u, got, want[u])
		}
	}
	// Six streams, 3+2+1+1+1 deliveries before the marker, 6 with it.
	if got := testkit.MetricValue(t, base+"/metrics", `caddy_notify_deliveries_total`) - deliveries; got != 3*2+2+1+1+1+6 {
		t.Errorf("deliveries_total rose by %v, want 17", got)
	}
}

// TestGroupsFollowReauth: with reauth, a user removed from a group at the
// auth API stops getting its messages within about two intervals, without
// the stream ending; added back, they start again.
func TestGroupsFollowReauth(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, groupUsers(map[string]string{"alice": `["org:7"]`}))
	base := serve(t, rs, auth, `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		groups_field groups
		reauth 1s
		heartbeat 0
	}`)
	s := openReady(t, base+"/events", "alice-token")
	// probe publishes a group message and a marker to alice, and reports
	// whether the group message came before the marker.
	n := 0
	probe := func() bool {
		n++
		rs.Publish(t, defaultChannel, fmt.Sprintf(`{"groups":"org:7","n":%d}`, n))
		marker := fmt.Sprintf(`{"recipient_id":"alice","marker":%d}`, n)
		rs.Publish(t, defaultChannel, marker)
		got := s.Collect(t, marker)
		switch {
		case len(got) == 0:
			return false
		case len(got) == 1 && got[0] == fmt.Sprintf(`{"groups":"org:7","n":%d}`, n):
			return true
		}
		t.Fatalf("probe %d: got %q", n, got)
		return false
	}
	if !probe() {
		t.Fatal("a member does not get the group's messages")
	}
	// until probes every 100ms until the answer is want, and returns how
	// long it took.
	until := func(want bool) time.Duration {
		start := time.Now()
		for probe() != want {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("group delivery still %t after 5s", !want)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return time.Since(start)
	}
	auth.SetReply("alice-token", testkit.AuthReply{Status: http.StatusOK, Body: `{"user_id":"alice","groups":["org:8"]}`})
	if d := until(false); d > 2500*time.Millisecond {
		t.Errorf("removed from the group after %s, want within about two intervals", d)
	}
	auth.SetReply("alice-token", testkit.AuthReply{Status: http.StatusOK, Body: `{"user_id":"alice","groups":["org:7","org:8"]}`})
	if d := until(true); d > 2500*time.Millisecond {
		t.Errorf("added to the group after %s, want within about two intervals", d)
	}
	// org:8, added at the first change, delivers too; nothing was revoked.
	rs.Publish(t, defaultChannel, `{"groups":"org:8","n":0}`)
	if ev := s.Next(t, 5*time.Second); ev.Data != `{"groups":"org:8","n":0}` || ev.Name != "" {
		t.Fatalf("got %+v", ev)
	}
	if got := testkit.MetricValue(t, base+"/metrics", `caddy_notify_revoked_total{reason="user_changed"}`); got != 0 {
		t.Errorf("revoked_total{reason=user_changed} = %v, want 0: a membership change is not a revocation", got)
	}
}

// TestMalformedGroupsAnswer: an auth API answer whose groups cannot be read
// fails the check with 502 and opens no stream; the limits are inclusive.
func TestMalformedGroupsAnswer(t *testing.T) {
	rs := testkit.StartRedis(t)
	many := make([]string, 1025)
	for i := range many {
		many[i] = fmt.Sprintf("%q", fmt.Sprint("g", i))
	}
	long := strings.Repeat("g", 256)
	bad := map[string]string{
		"string":          `"org:7"`,
		"number":          `7`,
		"object":          `{"org":7}`,
		"number element":  `["org:7",7]`,
		"null element":    `["org:7",null]`,
		"empty name":      `[""]`,
		"name too long":   `["` + long + `g"]`,
		"invalid UTF-8":   "[\"org\xff\"]",
		"lone surrogate":  `["org\ud800"]`,
		"too many groups": "[" + strings.Join(many, ",") + "]",
	}
	good := map[string]string{
		"null":       `null`,
		"empty":      `[]`,
		"at limits":  "[\"" + long + "\"," + strings.Join(many[:1023], ",") + "]",
		"duplicates": `["a","a"]`,
	}
	replies := map[string]testkit.AuthReply{}
	for name, groups := range bad {
		replies["bad-"+strings.ReplaceAll(name, " ", "-")] = testkit.AuthReply{Status: 200, Body: `{"user_id":"alice","groups":` + groups + `}`}
	}
	for name, groups := range good {
		replies["good-"+strings.ReplaceAll(name, " ", "-")] = testkit.AuthReply{Status: 200, Body: `{"user_id":"alice","groups":` + groups + `}`}
	}
	auth := testkit.StartAuthAPI(t, replies)
	base := serve(t, rs, auth, `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		groups_field groups
		heartbeat 0
	}`)
	refused := testkit.MetricValue(t, base+"/metrics", `caddy_notify_stream_requests_total{outcome="502"}`)
	for name := range bad {
		t.Run(name, func(t *testing.T) {
			resp, err := http.DefaultClient.Do(testkit.Request(t, base+"/events", "bad-"+strings.ReplaceAll(name, " ", "-")))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || string(body) != `{"error":"Authentication service returned invalid groups."}`+"\n" {
				t.Errorf("got %d %q, want 502 and the invalid groups error", resp.StatusCode, body)
			}
		})
	}
	if got := testkit.MetricValue(t, base+"/metrics", `caddy_notify_stream_requests_total{outcome="502"}`) - refused; got != float64(len(bad)) {
		t.Errorf("stream_requests_total{outcome=502} rose by %v, want %d", got, len(bad))
	}
	if got := testkit.MetricValue(t, base+"/metrics", `caddy_notify_streams_open`); got != 0 {
		t.Errorf("streams_open = %v after refusals", got)
	}
	for name := range good {
		t.Run(name, func(t *testing.T) {
			s := openReady(t, base+"/events", "good-"+strings.ReplaceAll(name, " ", "-"))
			s.Close()
		})
	}
}

// TestMalformedGroupMessages: a message whose group field cannot be read is
// dropped whole and counted as invalid_group; the messages around it are
// delivered as if it had not been there.
func TestMalformedGroupMessages(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, groupUsers(map[string]string{"alice": `["org:7"]`}))
	base := serve(t, rs, auth, `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		groups_field groups
		heartbeat 0
	}`)
	dropped := testkit.MetricValue(t, base+"/metrics", `caddy_notify_dropped_total{reason="invalid_group"}`)
	s := openReady(t, base+"/events", "alice-token")
	bad := []string{
		`{"groups":7}`, `{"groups":{"a":1}}`, `{"groups":["org:7",7]}`, `{"groups":[""]}`,
		`{"groups":""}`, `{"groups":"` + strings.Repeat("g", 257) + `"}`, "{\"groups\":\"org\xff\"}",
		`{"groups":["org:7",null],"recipient_id":"alice"}`, `{"groups":"org:7\ud800"}`,
	}
	rs.Publish(t, defaultChannel, `{"groups":"org:7","n":1}`)
	for _, m := range bad {
		rs.Publish(t, defaultChannel, m)
	}
	rs.Publish(t, defaultChannel, `{"groups":"org:7","n":2}`)
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice","end":1}`)
	if got := s.Collect(t, `{"recipient_id":"alice","end":1}`); !slices.Equal(got, []string{`{"groups":"org:7","n":1}`, `{"groups":"org:7","n":2}`}) {
		t.Errorf("got %q", got)
	}
	if got := testkit.MetricValue(t, base+"/metrics", `caddy_notify_dropped_total{reason="invalid_group"}`) - dropped; got != float64(len(bad)) {
		t.Errorf("dropped_total{reason=invalid_group} rose by %v, want %d", got, len(bad))
	}
}

// TestGroupsAcrossPartitions: with 4 partitions on two Caddy processes and
// sharded pub/sub, a group message published through notify_publish or the
// publish package reaches every member on both instances, once, and nobody
// else.
func TestGroupsAcrossPartitions(t *testing.T) {
	rs := testkit.StartRedis(t)
	// Users and groups on different partitions (of 4): alice 3, bob 0,
	// erin 2, org:7 1, org:8 0.
	auth := testkit.StartAuthAPI(t, groupUsers(map[string]string{
		"alice": `["org:7"]`, "bob": `["org:7","org:8"]`, "erin": `["org:8"]`,
	}))
	for id, want := range map[string]int{"alice": 3, "bob": 0, "erin": 2, "org:7": 1, "org:8": 0} {
		if got := publish.Partition(id, 4); got != want {
			t.Fatalf("partition of %s is %d; the test expects %d", id, got, want)
		}
	}
	routes := `
	notify /events {
		redis {redis}
		partitions 4
		sharded
		auth_url {auth}
		groups_field groups
		heartbeat 0
	}
	notify_publish /publish {
		redis {redis}
		partitions 4
		sharded
		group_field groups
	}`
	instances := []*caddyProcess{startCaddyProcess(t, rs.URL(), auth.URL, routes), startCaddyProcess(t, rs.URL(), auth.URL, routes)}
	type member struct {
		user string
		s    *testkit.Stream
	}
	var streams []member
	for _, p := range instances {
		for _, u := range []string{"alice", "bob", "erin"} {
			streams = append(streams, member{u, openReady(t, p.base()+"/events", u+"-token")})
		}
	}
	rdb := rs.Client()
	t.Cleanup(func() { rdb.Close() })
	pub := &publish.Publisher{Client: rdb, Channel: defaultChannel, Partitions: 4, Sharded: true}
	post := func(body string) {
		t.Helper()
		resp, err := http.Post(instances[1].base()+"/publish", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s: %d %s", body, resp.StatusCode, answer)
		}
	}
	post(`{"groups":"org:7","n":1}`)
	if _, err := pub.PublishMessage(t.Context(), publish.Message{Data: []byte(`{"groups":"org:7","n":2}`), Groups: []string{"org:7"}}); err != nil {
		t.Fatal(err)
	}
	post(`[{"groups":["org:8"],"recipient_id":"alice","n":3},{"groups":"org:9","n":4}]`)
	if _, err := pub.PublishMessage(t.Context(), publish.Message{Data: []byte(`{"groups":["org:7","org:8"],"recipient_id":"erin","n":5}`),
		Recipients: []string{"erin"}, Groups: []string{"org:7", "org:8"}}); err != nil {
		t.Fatal(err)
	}
	post(`{"recipient_id":["alice","bob","erin"],"end":1}`)
	want := map[string][]string{
		"alice": {`{"groups":"org:7","n":1}`, `{"groups":"org:7","n":2}`, `{"groups":["org:8"],"recipient_id":"alice","n":3}`,
			`{"groups":["org:7","org:8"],"recipient_id":"erin","n":5}`},
		"bob": {`{"groups":"org:7","n":1}`, `{"groups":"org:7","n":2}`, `{"groups":["org:8"],"recipient_id":"alice","n":3}`,
			`{"groups":["org:7","org:8"],"recipient_id":"erin","n":5}`},
		"erin": {`{"groups":["org:8"],"recipient_id":"alice","n":3}`, `{"groups":["org:7","org:8"],"recipient_id":"erin","n":5}`},
	}
	for i, m := range streams {
		got := m.s.Collect(t, `{"recipient_id":["alice","bob","erin"],"end":1}`)
		// Messages from different partitions may interleave: compare sets,
		// then the order within each publisher's sequence is by n.
		slices.Sort(got)
		w := slices.Clone(want[m.user])
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("instance %d, %s got\n%q\nwant\n%q", i/3, m.user, got, w)
		}
	}
}

// TestGroupsResume: in stream mode, a resume replays the messages of the
// groups the user is in, in order, with their entry IDs, from memory and
// from Redis, and nothing of the others; with partitions, a group message
// is on every partition and each user reads it from theirs.
func TestGroupsResume(t *testing.T) {
	rs := testkit.StartRedis(t)
	rdb := rs.Client()
	t.Cleanup(func() { rdb.Close() })
	auth := testkit.StartAuthAPI(t, groupUsers(map[string]string{"alice": `["org:7"]`, "bob": `["org:8"]`}))
	cfg := &caddyConfig{redis: rs, auth: auth, routes: `
	notify /events {
		redis {redis}
		stream groupstream
		partitions 2
		auth_url {auth}
		groups_field groups
		history_entries 8
		heartbeat 0
	}`}
	base := cfg.load(t)
	pub := &publish.Publisher{Client: rdb, Stream: "groupstream", Partitions: 2}
	alicePart := publish.Partition("alice", 2)
	n := 0
	// send publishes a numbered message and returns the ID of its copy on
	// alice's partition.
	send := func(recipients, groups []string) (data, id string) {
		t.Helper()
		n++
		data = fmt.Sprintf(`{"recipient_id":%s,"groups":%s,"n":%d}`, jsonList(recipients), jsonList(groups), n)
		res, err := pub.PublishMessage(t.Context(), publish.Message{Data: []byte(data), Recipients: recipients, Groups: groups})
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range res.Targets {
			if tg.Partition == alicePart {
				return data, tg.ID
			}
		}
		return data, ""
	}
	type event struct{ id, data string }
	// round publishes a mix and returns what alice must see of it.
	round := func() (want []event) {
		for _, m := range []struct{ users, groups []string }{
			{nil, []string{"org:7"}}, {nil, []string{"org:8"}}, {[]string{"bob"}, nil}, {[]string{"alice"}, nil},
			{[]string{"bob"}, []string{"org:7"}}, {nil, []string{"org:8", "org:9"}},
		} {
			data, id := send(m.users, m.groups)
			if slices.Contains(m.groups, "org:7") || slices.Contains(m.users, "alice") {
				want = append(want, event{id, data})
			}
		}
		return want
	}
	readEvents := func(s *testkit.Stream, k int) (got []event) {
		for range k {
			ev := s.Next(t, 5*time.Second)
			got = append(got, event{ev.ID, ev.Data})
		}
		return got
	}
	s := openStreamWhenUp(t, base+"/events", "alice-token", "")
	first := round()
	if got := readEvents(s, len(first)); !slices.Equal(got, first) {
		t.Fatalf("live: got %q, want %q", got, first)
	}
	last := first[len(first)-1].id
	s.Close()
	for _, tc := range []struct {
		name   string
		rounds int
	}{{"from memory", 1}, {"from redis", 4}} {
		t.Run(tc.name, func(t *testing.T) {
			var want []event
			for range tc.rounds {
				want = append(want, round()...)
			}
			s := openStreamWhenUp(t, base+"/events", "alice-token", last)
			got := readEvents(s, len(want))
			if !slices.Equal(got, want) {
				t.Errorf("resume: got\n%q\nwant\n%q", got, want)
			}
			// Nothing more: a marker to alice comes next.
			data, id := send([]string{"alice"}, nil)
			if ev := s.Next(t, 5*time.Second); ev.Data != data || ev.ID != id {
				t.Errorf("after the replay: got %+v, want the marker %s", ev, id)
			}
			last = id
			s.Close()
		})
	}
}

// jsonList writes strings as a JSON array, or null when there are none.
func jsonList(s []string) string {
	if s == nil {
		return "null"
	}
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// TestNamedEvents: with event_field, a message whose field is a usable name
// is written with that event name, in pub/sub and stream mode; any other
// value leaves it unnamed, and nothing is dropped for it.
func TestNamedEvents(t *testing.T) {
	rs := testkit.StartRedis(t)
	rdb := rs.Client()
	t.Cleanup(func() { rdb.Close() })
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	metrics /metrics
	notify /events {
		redis {redis}
		auth_url {auth}
		event_field type
		heartbeat 0
	}
	notify /stream {
		redis {redis}
		stream namedstream
		auth_url {auth}
		event_field type
		heartbeat 0
	}`)
	long := strings.Repeat("e", 64)
	tests := []struct {
		msg, name string
	}{
		{`{"recipient_id":"alice","type":"order_paid"}`, "order_paid"},
		{`{"recipient_id":"alice","type":"` + long + `"}`, long},
		{`{"recipient_id":"alice","type":"` + long + `e"}`, ""},
		{`{"recipient_id":"alice","type":"a\nb"}`, ""},
		{`{"recipient_id":"alice","type":"a\rb"}`, ""},
		{`{"recipient_id":"alice","type":""}`, ""},
		{`{"recipient_id":"alice","type":5}`, ""},
		{`{"recipient_id":"alice","type":null}`, ""},
		{`{"recipient_id":"alice","type":["x"]}`, ""},
		{`{"recipient_id":"alice","type":"reset"}`, ""},
		{`{"recipient_id":"alice","type":"revoked"}`, ""},
		{`{"recipient_id":"alice","type":"caf\u00e9"}`, "café"},
		{`{"recipient_id":"alice","type":"a\u0000b"}`, ""},
		{`{"recipient_id":"alice"}`, ""},
	}
	deliveries := testkit.MetricValue(t, base+"/metrics", `caddy_notify_deliveries_total`)
	pubsub := openReady(t, base+"/events", "alice-token")
	stream := openStreamWhenUp(t, base+"/stream", "alice-token", "")
	for _, tt := range tests {
		rs.Publish(t, defaultChannel, tt.msg)
		if _, err := rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: "namedstream", Values: []any{"data", tt.msg}}).Result(); err != nil {
			t.Fatal(err)
		}
	}
	for mode, s := range map[string]*testkit.Stream{"pub/sub": pubsub, "stream": stream} {
		for _, tt := range tests {
			ev := s.Next(t, 5*time.Second)
			if ev.Data != tt.msg || ev.Name != tt.name {
				t.Errorf("%s: %s arrived as name %q data %q, want name %q", mode, tt.msg, ev.Name, ev.Data, tt.name)
			}
		}
	}
	if got := testkit.MetricValue(t, base+"/metrics", `caddy_notify_deliveries_total`) - deliveries; got != float64(2*len(tests)) {
		t.Errorf("deliveries_total rose by %v, want %d", got, 2*len(tests))
	}
}
