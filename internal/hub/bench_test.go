package hub

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/streamid"
	"github.com/caddy-notify/notify/internal/testkit"
)

// BenchmarkResumeStorm measures one resuming stream of a reconnect storm in
// stream mode, against a real redis-server: 1,000 users, 20,000 entries in
// the stream, each client a few events behind (served from the window) or
// far behind (read from Redis). It reports Redis commands per resume.
func BenchmarkResumeStorm(b *testing.B) {
	rs := testkit.StartRedis(b)
	c := rs.Client()
	defer c.Close()
	const users, entries = 1000, 20_000
	pipe := c.Pipeline()
	var ids []string
	var cmds []*redis.StringCmd
	for i := range entries {
		cmds = append(cmds, pipe.XAdd(b.Context(), &redis.XAddArgs{Stream: "storm",
			Values: []any{"data", fmt.Sprintf(`{"recipient_id":"%d","n":%d}`, i%users, i)}}))
		if i%1000 == 999 {
			if _, err := pipe.Exec(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, cmd := range cmds {
		ids = append(ids, cmd.Val())
	}
	// Each read from Redis asks for readBudget/max_message_size entries:
	// 16 with the default 1 MiB, 256 with 64 KiB.
	for _, cfg := range []struct {
		suffix  string
		maxSize int
		behinds map[string]int
	}{
		{"", 1 << 20, map[string]int{"memory/5-behind": 5 * users, "redis/15000-behind": 15_000}},
		{"/max_message_size=64KiB", 64 << 10, map[string]int{"redis/15000-behind": 15_000}},
	} {
		m := metrics.New()
		hs := NewSet(c, Source{Stream: "storm", MaxMessageSize: cfg.maxSize,
			History: History{Entries: 10_000, Bytes: 32 << 20}}, Options{Logger: zap.NewNop(), Metrics: m})
		hb, ix := hs.hubs[0], hs.Attach(index.Key{DataField: "data", Fields: message.Fields{Recipient: "recipient_id"}})[0]
		if !hb.WaitUp(b.Context(), 5*time.Second) {
			_ = hs.Stop()
			b.Fatal("stream reader not up")
		}
		for name, behind := range cfg.behinds {
			b.Run(name+cfg.suffix, func(b *testing.B) {
				cmdsBefore := testutil.ToFloat64(m.ReplayRedisCommands)
				replayed := 0
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					user := strconv.Itoa(i % users)
					// The client's last event: its own entry `behind` entries ago.
					pos := entries - behind + i%users
					after, _ := streamid.Parse(ids[pos])
					sub := index.NewSubscriber(user, false, index.NewOwner(index.QueueLimit{Events: 8}))
					res, err := hb.Register(b.Context(), ix, sub, nil, &after, 1000)
					if err != nil {
						b.Fatal(err)
					}
					replayed += len(res.replay)
					if res.written != nil {
						res.written() // as the stream does once the replay is out: frees the replay slot
					}
					ix.Remove(sub)
				}
				b.ReportMetric((testutil.ToFloat64(m.ReplayRedisCommands)-cmdsBefore)/float64(b.N), "redis-cmds/op")
				b.ReportMetric(float64(replayed)/float64(b.N), "events/op")
			})
		}
		_ = hs.Stop()
	}
}
