package notify

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// routingSetup runs one Caddy with two routes on the same channel: /events
// without broadcast and /all with it.
func routingSetup(t *testing.T) (base string, rs *testkit.Redis) {
	t.Helper()
	rs = testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice", "bob"))
	auth.SetReply("eight-token", testkit.AuthReply{Status: 200, Body: `{"user_id":8}`})
	auth.SetReply("eightstr-token", testkit.AuthReply{Status: 200, Body: `{"user_id":"8"}`})
	auth.SetReply("big-token", testkit.AuthReply{Status: 200, Body: `{"user_id":9007199254740993}`})
	base = serve(t, rs, auth, `
	notify /events {
		redis {redis}
		auth_url {auth}
	}
	notify /all {
		redis {redis}
		auth_url {auth}
		broadcast
	}`)
	return base, rs
}

func TestRouting(t *testing.T) {
	base, rs := routingSetup(t)
	streams := map[string]*testkit.Stream{
		"alice":    testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token")),
		"alice2":   testkit.OpenStream(t, testkit.Request(t, base+"/events", "alice-token")),
		"bob":      testkit.OpenStream(t, testkit.Request(t, base+"/events", "bob-token")),
		"eight":    testkit.OpenStream(t, testkit.Request(t, base+"/events", "eight-token")),
		"eightstr": testkit.OpenStream(t, testkit.Request(t, base+"/events", "eightstr-token")),
		"big":      testkit.OpenStream(t, testkit.Request(t, base+"/events", "big-token")),
		"bob-all":  testkit.OpenStream(t, testkit.Request(t, base+"/all", "bob-token")),
	}
	msgs := []string{
		`{"recipient_id":"alice","n":1}`,
		`{"recipient_id":"bob","n":2}`,
		`{"recipient_id":8,"n":3}`,
		`{"recipient_id":"8","n":4}`,
		`{"recipient_id":[8,"8",8,null],"n":5}`,
		`{"recipient_id":["alice","bob"],"n":6}`,
		`{"recipient_id":"*","n":7}`,
		`{"recipient_id":["*","alice"],"n":8}`,
		`{"recipient_id":9007199254740993,"n":9}`,
		`{"recipient_id":9007199254740992,"n":10}`,
		`{"recipient_id":8.0,"n":11}`,
		`{"recipient_id":"08","n":12}`,
		`{"recipient_id":4.2e1,"n":13}`,
		"{\"recipient_id\":\"alice\",\n \"n\":14}",
		`{"recipient_id":"Alice","n":15}`,
	}
	for _, m := range msgs {
		rs.Publish(t, defaultChannel, m)
	}
	const marker = `{"recipient_id":"*","end":true}`
	rs.Publish(t, defaultChannel, marker)
	// The marker reaches only broadcast streams; the others get a
	// personal end marker each, published after everything else.
	for _, u := range []string{"alice", "bob", "8", "9007199254740993"} {
		rs.Publish(t, defaultChannel, fmt.Sprintf(`{"recipient_id":%q,"end":true}`, u))
	}
	end := func(u string) string { return fmt.Sprintf(`{"recipient_id":%q,"end":true}`, u) }

	tests := []struct {
		stream string
		marker string
		want   []string
	}{
		{"alice", end("alice"), []string{msgs[0], msgs[5], msgs[7], msgs[13]}},
		{"alice2", end("alice"), []string{msgs[0], msgs[5], msgs[7], msgs[13]}},
		{"bob", end("bob"), []string{msgs[1], msgs[5]}},
		{"eight", end("8"), []string{msgs[2], msgs[3], msgs[4]}},
		{"eightstr", end("8"), []string{msgs[2], msgs[3], msgs[4]}},
		{"big", end("9007199254740993"), []string{msgs[8]}},
		// A broadcast stream gets "*" messages and its own, each once.
		{"bob-all", marker, []string{msgs[1], msgs[5], msgs[6], msgs[7]}},
	}
	for _, tt := range tests {
		t.Run(tt.stream, func(t *testing.T) {
			got := streams[tt.stream].Collect(t, tt.marker)
			if !slices.Equal(got, tt.want) {
				t.Errorf("received\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestStreamHeadersAndRetry(t *testing.T) {
	base, _ := routingSetup(t)
	resp, err := testkit.StreamClient.Do(testkit.Request(t, base+"/events", "alice-token"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want := map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// The retry field arrives before any event is published.
	buf := make([]byte, len("retry: 3000\n\n"))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(resp.Body, buf); done <- err }()
	select {
	case err := <-done:
		if err != nil || string(buf) != "retry: 3000\n\n" {
			t.Fatalf("first bytes %q, err %v", buf, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("retry field not flushed at stream start")
	}
}
