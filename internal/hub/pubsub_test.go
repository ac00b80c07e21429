package hub

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/metrics"
)

// TestGoRedisHasShardedReconnectFix pins a go-redis with the fix of
// go-redis#3806 (PR #3829, in 9.20.0): before it, a cluster PubSub holding
// only SSUBSCRIBE channels reconnected to a random node, whose MOVED answer
// was dropped, and delivery stopped silently. TestCluster's failover and
// resharding show delivery resuming; the module also renews a subscription
// that Redis answers with MOVED or ends, so it does not rely on the fix.
func TestGoRedisHasShardedReconnectFix(t *testing.T) {
	var major, minor, patch int
	if _, err := fmt.Sscanf(redis.Version(), "%d.%d.%d", &major, &minor, &patch); err != nil {
		t.Fatalf("go-redis version %q: %v", redis.Version(), err)
	}
	if major < 9 || (major == 9 && minor < 20) {
		t.Fatalf("go-redis %s predates the sharded pub/sub reconnect fix (9.20.0)", redis.Version())
	}
}

// Delivering a message allocates its frame once and nothing else in
// proportion to its size: with go-redis's own copy, a message costs about
// twice its size while it is delivered.
func TestDispatchAllocatesOneFrame(t *testing.T) {
	ix := index.New(index.Key{Fields: message.Fields{Recipient: "recipient_id"}})
	s := index.NewSubscriber("alice", false, index.NewOwner(index.QueueLimit{Events: 8}))
	ix.Add(s)
	hb := &Hub{logger: zap.NewNop(), m: metrics.New()}
	hb.snapshot.Store(&[]*route{{ix: ix}})
	p := &pubsubReader{hub: hb, maxSize: 64 << 20}
	head := `{"recipient_id":"alice","pad":"`
	payload := []byte(head + strings.Repeat("x", 20<<20-len(head)-2) + `"}`)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p.dispatch(payload)
	runtime.ReadMemStats(&after)
	if got, _, _ := s.Take(nil); len(got) != 1 {
		t.Fatalf("%d events delivered, want 1", len(got))
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	if limit := uint64(len(payload)) * 11 / 10; allocated > limit {
		t.Errorf("dispatching a %d MiB message allocated %d MiB, want at most %d MiB (its frame)",
			len(payload)>>20, allocated>>20, limit>>20)
	}
}
