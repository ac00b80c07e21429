package notify

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// max_streams_per_user refuses a user's third stream with 429 after
// authentication, while another user's stream opens; max_streams refuses
// the fourth stream with 503 before the auth API is asked.
func TestStreamLimits(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice", "bob"))
	base := serve(t, rs, auth, `
	notify /per-user {
		redis {redis}
		auth_url {auth}
		max_streams_per_user 2
	}
	notify /all {
		redis {redis}
		auth_url {auth}
		max_streams 3
	}`)
	refused := func(path, token string, status int, msg string) {
		t.Helper()
		resp, err := http.DefaultClient.Do(testkit.Request(t, base+path, token))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != status || resp.Header.Get("Retry-After") != "3" {
			t.Fatalf("%s: status %d, Retry-After %q; want %d, 3", path, resp.StatusCode, resp.Header.Get("Retry-After"), status)
		}
		if got := jsonBody(t, resp.Body); got["error"] != msg || len(got) != 1 {
			t.Fatalf("%s: body %v, want error %q", path, got, msg)
		}
	}

	a1 := testkit.OpenStream(t, testkit.Request(t, base+"/per-user", "alice-token"))
	testkit.OpenStream(t, testkit.Request(t, base+"/per-user", "alice-token"))
	refused("/per-user", "alice-token", http.StatusTooManyRequests, "Too many streams for this user.")
	testkit.OpenStream(t, testkit.Request(t, base+"/per-user", "bob-token"))
	a1.Close()
	testkit.WaitFor(t, 5*time.Second, "alice's place freed", func() bool {
		resp, err := testkit.StreamClient.Do(testkit.Request(t, base+"/per-user", "alice-token"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return false
		}
		t.Cleanup(func() { resp.Body.Close() })
		return true
	})

	for range 3 {
		testkit.OpenStream(t, testkit.Request(t, base+"/all", "bob-token"))
	}
	calls := auth.Calls()
	refused("/all", "bob-token", http.StatusServiceUnavailable, "Too many streams.")
	if got := auth.Calls(); got != calls {
		t.Errorf("the auth API was called %d times for a refused stream, want 0", got-calls)
	}
}
