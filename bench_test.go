package notify

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// BenchmarkDispatch measures routing one message to one stream while
// `others` unrelated streams are registered: the cost must not grow with
// them.
func BenchmarkDispatch(b *testing.B) {
	for _, others := range []int{1, 10, 1_000_000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) {
			ix := newIndex(indexKey{recipientField: "recipient_id"})
			for i := range others {
				ix.add(newSubscriber("other-"+strconv.Itoa(i), false, nil, queueLimit{events: 8}))
			}
			target := newSubscriber("42", false, nil, queueLimit{events: 1 << 30})
			ix.add(target)
			payload := []byte(`{"recipient_id":42,"type":"order_paid","order":{"id":1234,"total":"19.99"}}`)
			buf := make([]*event, 0, 1024)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				users, _ := recipients(payload, "recipient_id")
				ev := messageEvent(payload)
				ix.deliver(users, false, ev)
				if i%1024 == 1023 {
					buf, _, _ = target.take(buf)
				}
			}
		})
	}
}

// BenchmarkDeliver isolates the per-stream cost: one pre-framed event to a
// user with 100 streams (fan-out), allocations per delivery included.
func BenchmarkDeliver(b *testing.B) {
	ix := newIndex(indexKey{recipientField: "recipient_id"})
	var subs []*subscriber
	for range 100 {
		s := newSubscriber("u", false, nil, queueLimit{events: 1 << 30})
		subs = append(subs, s)
		ix.add(s)
	}
	ev := messageEvent([]byte(`{"recipient_id":"u"}`))
	users := []string{"u"}
	buf := make([]*event, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ix.deliver(users, false, ev)
		if i%32 == 31 {
			for _, s := range subs {
				buf, _, _ = s.take(buf)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/delivery")
}

func BenchmarkAppendEvent(b *testing.B) {
	payload := []byte(`{"recipient_id":42,"type":"order_paid","lines":["a","b"],"note":"multi` + "\n" + `line"}`)
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for range b.N {
		dst = appendEvent(dst[:0], "1700000000000-0", payload)
	}
}

func BenchmarkRecipients(b *testing.B) {
	for name, payload := range map[string]string{
		"single": `{"recipient_id":42,"type":"order_paid","order":{"id":1234,"total":"19.99"}}`,
		"array":  `{"recipient_id":[1,2,3,"4",5,6,7,8],"type":"team_update","text":"hello"}`,
	} {
		b.Run(name, func(b *testing.B) {
			p := []byte(payload)
			b.ReportAllocs()
			for range b.N {
				if _, reason := recipients(p, "recipient_id"); reason != "" {
					b.Fatal(reason)
				}
			}
		})
	}
}

// BenchmarkResumeStorm measures one resuming stream of a reconnect storm in
// stream mode, against a real redis-server: 1,000 users, 20,000 entries in
// the stream, each client a few events behind (served from the window) or
// far behind (read from Redis). It reports Redis commands per resume.
func BenchmarkResumeStorm(b *testing.B) {
	rs := startRedis(b)
	c := rs.client()
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
	opts, _ := redisOptions(rs.URL())
	// Each read from Redis asks for readBudget/max_message_size entries:
	// 16 with the default 1 MiB, 256 with 64 KiB.
	for _, cfg := range []struct {
		suffix  string
		maxSize int
		behinds map[string]int
	}{
		{"", DefaultMaxMessageSize, map[string]int{"memory/5-behind": 5 * users, "redis/15000-behind": 15_000}},
		{"/max_message_size=64KiB", 64 << 10, map[string]int{"redis/15000-behind": 15_000}},
	} {
		hs := newHubSet(opts, source{stream: "storm", maxMessageSize: cfg.maxSize,
			history: historyConfig{entries: 10_000, bytes: 32 << 20}}, zap.NewNop())
		hb, ix := hs.hubs[0], hs.attach(indexKey{dataField: "data", recipientField: "recipient_id"})[0]
		if !hb.waitUp(b.Context(), 5*time.Second) {
			hs.Destruct()
			b.Fatal("stream reader not up")
		}
		for name, behind := range cfg.behinds {
			b.Run(name+cfg.suffix, func(b *testing.B) {
				cmdsBefore := testutil.ToFloat64(metrics.replayRedisCommands)
				replayed := 0
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					user := strconv.Itoa(i % users)
					// The client's last event: its own entry `behind` entries ago.
					pos := entries - behind + i%users
					after, _ := parseEntryID(ids[pos])
					sub := newSubscriber(user, false, nil, queueLimit{events: 8})
					res, err := hb.register(b.Context(), ix, sub, &after, 1000)
					if err != nil {
						b.Fatal(err)
					}
					replayed += len(res.replay)
					if res.written != nil {
						res.written() // as the stream does once the replay is out: frees the replay slot
					}
					ix.remove(sub)
				}
				b.ReportMetric((testutil.ToFloat64(metrics.replayRedisCommands)-cmdsBefore)/float64(b.N), "redis-cmds/op")
				b.ReportMetric(float64(replayed)/float64(b.N), "events/op")
			})
		}
		hs.Destruct()
	}
}

// BenchmarkConnect opens and closes one HTTP/1.1 stream per iteration
// against an in-process Caddy (real redis-server, httptest auth API): the
// server-side cost of a connect, auth call and hijack included.
func BenchmarkConnect(b *testing.B) {
	rs := startRedis(b)
	auth := startAuthAPI(b, users("alice"))
	base := serve(b, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
	}`)
	req := func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, base+"/", nil)
		r.Header.Set("Authorization", "Bearer alice-token")
		return r
	}
	buf := make([]byte, 64)
	b.ResetTimer()
	for range b.N {
		resp, err := streamClient.Do(req())
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%v %v", resp, err)
		}
		if _, err := resp.Body.Read(buf); err != nil { // the retry field
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}

// BenchmarkIndexChurn measures streams connecting and disconnecting from
// every core at once, each on its own user: what shard locks cost when they
// are not contended.
func BenchmarkIndexChurn(b *testing.B) {
	ix := newIndex(indexKey{recipientField: "recipient_id"})
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		s := newSubscriber("user-"+strconv.FormatInt(next.Add(1), 10), false, nil, queueLimit{events: 8})
		for pb.Next() {
			ix.add(s)
			ix.remove(s)
		}
	})
}

// BenchmarkResponseHead is the head a hijacked stream writes first.
func BenchmarkResponseHead(b *testing.B) {
	hdr := http.Header{
		"Content-Type":                     {"text/event-stream"},
		"Cache-Control":                    {"no-cache"},
		"X-Accel-Buffering":                {"no"},
		"Server":                           {"Caddy"},
		"Access-Control-Allow-Origin":      {"https://app.example.com"},
		"Access-Control-Allow-Credentials": {"true"},
		"Vary":                             {"Origin"},
	}
	b.ReportAllocs()
	for b.Loop() {
		responseHead(hdr)
	}
}
