package notify

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/testkit"
	"github.com/caddy-notify/notify/publish"
)

// Guarantee 4: several Caddy processes on one Redis deployment. Each is a
// separate process (./cmd/caddy), so that one can be SIGKILLed.

// TestInstances runs three Caddy processes on one Redis server.
func TestInstances(t *testing.T) {
	rs := testkit.StartRedis(t)
	rdb := rs.Client()
	t.Cleanup(func() { rdb.Close() })
	runInstances(t, rs.URL(), func(h clusterHandler) *publish.Publisher {
		return &publish.Publisher{Client: rdb, Channel: h.channel, Stream: h.stream, Sharded: h.sharded, Partitions: h.partitions}
	})
}

// runInstances starts three Caddy processes reading redisURL with a
// pub/sub and a stream handler, 16 partitions each, and checks that a
// user's streams on every instance each get every event, and that a
// stream-mode client whose instance is SIGKILLed resumes on another with
// Last-Event-ID, with no gap and no duplicate.
func runInstances(t *testing.T, redisURL string, publisher func(clusterHandler) *publish.Publisher) {
	auth := scaleAuth(t)
	pubsub := clusterHandler{path: "/pubsub", channel: "mi", partitions: 16}
	stream := clusterHandler{path: "/stream", stream: "mx", partitions: 16}
	if _, ok := publisher(pubsub).Client.(*redis.ClusterClient); ok {
		pubsub.sharded = true
	}
	instances := make([]*caddyProcess, 3)
	for i := range instances {
		instances[i] = startCaddyProcess(t, redisURL, auth.URL, pubsub.directive()+stream.directive())
	}

	t.Run("fan-out", func(t *testing.T) {
		for _, h := range []clusterHandler{pubsub, stream} {
			streams := map[string][]*testkit.Stream{}
			for _, u := range scaleUsers {
				for _, inst := range instances {
					streams[u] = append(streams[u], openStreamWhenUp(t, inst.base()+h.path, u+"-token", ""))
				}
			}
			pub := publisher(h)
			plan := mixedPlan(scaleUsers, 60)
			expectPlan(t, pub, h.path, plan, publishPlan(t, pub, h.path, plan), streams)
		}
	})

	t.Run("SIGKILL and resume elsewhere", func(t *testing.T) {
		pub := publisher(stream)
		streams := map[string][]*testkit.Stream{}
		for _, u := range scaleUsers {
			streams[u] = []*testkit.Stream{openStreamWhenUp(t, instances[0].base()+stream.path, u+"-token", "")}
		}
		plan := mixedPlan(scaleUsers, 40)
		at := expectPlan(t, pub, "before", plan, publishPlan(t, pub, "before", plan), streams)

		instances[0].kill() // SIGKILL: the streams break, nothing is closed cleanly
		for _, ss := range streams {
			ss[0].WaitEnded(t, 10*time.Second)
		}
		// Published while the clients are away, then live once they are back.
		missed := mixedPlan(scaleUsers, 40)
		missedResults := publishPlan(t, pub, "after", missed)
		resumed := map[string][]*testkit.Stream{}
		for i, u := range scaleUsers {
			inst := instances[1+i%2]
			resumed[u] = []*testkit.Stream{openStreamWhenUp(t, inst.base()+stream.path, u+"-token", at[u][0].ID)}
		}
		live := mixedPlan(scaleUsers, 40)
		for i := range live {
			live[i].n += len(missed)
		}
		liveResults := publishPlan(t, pub, "after", live)
		expectPlan(t, pub, "after", append(missed, live...), append(missedResults, liveResults...), resumed)
	})
}
