package notify

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/testkit"
	"github.com/caddy-notify/notify/publish"
)

// TestSentinel runs the module against a master, a replica and three
// sentinels: delivery in both modes, with and without partitions, then a
// failover while publishing.
func TestSentinel(t *testing.T) {
	ts := startSentinel(t)
	auth := scaleAuth(t)
	handlers := []clusterHandler{
		{path: "/pubsub", channel: "sp"},
		{path: "/pubsub4", channel: "sp4", partitions: 4},
		{path: "/stream", stream: "sx"},
		{path: "/stream4", stream: "sx4", partitions: 4},
	}
	routes := ""
	for _, h := range handlers {
		routes += h.directive()
	}
	base, checkLog := loadSecretURL(t, auth, ts.URL(), routes, sentinelDataPassword, sentinelPassword)
	sentinelAddrs := make([]string, len(ts.sentinels))
	for i, s := range ts.sentinels {
		sentinelAddrs[i] = s.Addr()
	}
	// No retries: a retried command whose reply was lost would publish twice.
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "main", SentinelAddrs: sentinelAddrs,
		Password: sentinelDataPassword, SentinelPassword: sentinelPassword, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	publisher := func(h clusterHandler) *publish.Publisher {
		return &publish.Publisher{Client: rdb, Channel: h.channel, Stream: h.stream, Partitions: h.partitions}
	}

	t.Run("delivery", func(t *testing.T) {
		for _, h := range handlers {
			t.Run(h.path[1:], func(t *testing.T) {
				checkDelivery(t, base+h.path, publisher(h), h.path)
			})
		}
	})

	// Guarantee 3: the master SIGKILLed; once the sentinels have promoted
	// the replica, delivery resumes with no client action.
	t.Run("failover", func(t *testing.T) {
		var targets []faultTarget
		for _, h := range handlers {
			pub := publisher(h)
			if h.stream != "" {
				pub.WaitReplicas, pub.WaitTimeout = 1, 500*time.Millisecond
			}
			targets = append(targets, faultTarget{name: "failover" + h.path[1:], url: base + h.path, pub: pub})
		}
		fr := startFaultRun(t, targets, scaleUsers)
		testkit.WaitFor(t, 30*time.Second, "publishing to start", func() bool { return fr.published() > 50 })
		killed := time.Now()
		restore := ts.failover()
		t.Logf("replica promoted %s after the kill", time.Since(killed).Round(time.Millisecond))
		fr.markRecovered()
		t.Logf("every subscription and reader back %s after the kill", time.Since(killed).Round(time.Millisecond))
		restore()
		for i, st := range fr.finish() {
			t.Logf("failover, %s: %d of %d deliveries published without error lost; %d received",
				fr.targets[i].name, st.lost, st.expected, st.received)
		}
	})

	// Neither password, in the URL from {env.*}, reached a log line at
	// DEBUG through the delivery and the failover.
	t.Run("no credential logged", func(t *testing.T) { checkLog() })
}
