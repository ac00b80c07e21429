package auth

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/testkit"
)

// TestCache drives the cache of a client through its clock: the cache sees
// time only through it, so entries expire exactly at the TTL, however long
// the checks take.
func TestCache(t *testing.T) {
	api := testkit.StartAuthAPI(t, testkit.Users("alice", "bob"))
	const ttl = time.Minute
	a := New(Options{URL: api.URL, UserField: "user_id", Timeout: 5 * time.Second, CacheTTL: ttl, Concurrency: 4,
		Logger: zap.NewNop(), Metrics: metrics.New()})
	t.Cleanup(a.Close)
	start := time.Now()
	var elapsed atomic.Int64 // nanoseconds since start, on the cache's clock
	a.cache.mu.Lock()
	a.cache.now = func() time.Time { return start.Add(time.Duration(elapsed.Load())) }
	a.cache.mu.Unlock()

	status := func(token, cookie string) int {
		if _, err := a.Check(t.Context(), "198.51.100.1", Credentials{Token: token, Cookie: cookie}); err != nil {
			return err.Status
		}
		return http.StatusOK
	}
	steps := []struct {
		name          string
		advance       time.Duration // the clock moves on by this much before the step
		token, cookie string
		status        int
		calls         int64 // total auth API calls after the step
	}{
		{"first check", 0, "alice-token", "", 200, 1},
		{"cached", 0, "alice-token", "", 200, 1},
		{"other token", 0, "bob-token", "", 200, 2},
		{"other cookie", 0, "alice-token", "s=1", 200, 3},
		{"refusal", 0, "nobody", "", 401, 4},
		{"refusals are not cached", 0, "nobody", "", 401, 5},
		{"cached until just before the TTL", ttl - time.Nanosecond, "alice-token", "", 200, 5},
		{"expired at the TTL", time.Nanosecond, "alice-token", "", 200, 6},
		{"cached again", 0, "alice-token", "", 200, 6},
		{"every entry expires", 0, "bob-token", "", 200, 7},
	}
	for _, st := range steps {
		elapsed.Add(int64(st.advance))
		if got := status(st.token, st.cookie); got != st.status {
			t.Fatalf("%s: status %d, want %d", st.name, got, st.status)
		}
		if got := api.Calls(); got != st.calls {
			t.Fatalf("%s: %d auth API calls, want %d", st.name, got, st.calls)
		}
	}
}
