package presence

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/testkit"
)

// Refreshing 10,000 users costs 11 Redis commands per interval: ZADD in
// batches of 1,000 members, and one prune.
func TestRefreshIsBatched(t *testing.T) {
	rs := testkit.StartRedis(t)
	c := rs.Client()
	t.Cleanup(func() { c.Close() })
	m := metrics.New()
	p := New(c, "online", 500*time.Millisecond, zap.NewNop(), m)
	t.Cleanup(p.Stop)
	for i := range 10_000 {
		p.Join("user-" + strconv.Itoa(i))
	}
	testkit.WaitFor(t, 3*time.Second, "10,000 members", func() bool { return c.ZCard(t.Context(), "online").Val() == 10_000 })
	before := testutil.ToFloat64(m.PresenceCommands)
	time.Sleep(2 * time.Second) // four intervals
	per := (testutil.ToFloat64(m.PresenceCommands) - before) / 4
	if per < 10 || per > 12*1.5 {
		t.Errorf("%.1f Redis commands per interval for 10,000 users, want 11 (10 batches of 1,000 and a prune)", per)
	}
	if got := fmt.Sprint(c.ZScore(t.Context(), "online", "user-9999").Val() >= float64(time.Now().UnixMilli())); got != "true" {
		t.Error("user-9999 not online")
	}
}
