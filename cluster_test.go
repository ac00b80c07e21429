package notify

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/testkit"
	"github.com/caddy-notify/notify/publish"
)

// clusterHandler is one notify handler of TestCluster's Caddy site.
type clusterHandler struct {
	path       string
	channel    string // or
	stream     string
	sharded    bool
	partitions int
}

func (ch clusterHandler) directive() string {
	d := fmt.Sprintf("\tnotify %s {\n\t\tredis {redis}\n\t\tauth_url {auth}\n\t\tbroadcast\n", ch.path)
	if ch.stream != "" {
		d += "\t\tstream " + ch.stream + "\n"
	} else {
		d += "\t\tchannel " + ch.channel + "\n"
	}
	if ch.sharded {
		d += "\t\tsharded\n"
	}
	if ch.partitions > 1 {
		d += fmt.Sprintf("\t\tpartitions %d\n", ch.partitions)
	}
	return d + "\t}\n"
}

// publisher publishes for ch: sharded pub/sub and streams through the
// cluster client, which routes each channel or key to its master; classic
// pub/sub through one node, as an existing application would (messages then
// reach every node over the cluster bus, in the order they were published).
func (ch clusterHandler) publisher(cc *redis.ClusterClient, node redis.UniversalClient) *publish.Publisher {
	p := &publish.Publisher{Client: cc, Channel: ch.channel, Stream: ch.stream, Sharded: ch.sharded, Partitions: ch.partitions}
	if ch.channel != "" && !ch.sharded {
		p.Client = node
	}
	return p
}

// TestCluster runs every cluster test against one Redis Cluster of three
// masters with a replica each: the delivery tests first, then the faults,
// each of which leaves the cluster whole again for the next.
func TestCluster(t *testing.T) {
	tc := startCluster(t)
	cc := tc.client()
	node := tc.nodes[0].Client()
	t.Cleanup(func() { node.Close() })
	auth := scaleAuth(t)
	handlers := []clusterHandler{
		{path: "/pubsub", channel: "ps"},
		{path: "/pubsub16", channel: "ps16", partitions: 16},
		{path: "/sharded", channel: "sh", sharded: true},
		{path: "/sharded16", channel: "sh16", sharded: true, partitions: 16},
		{path: "/stream", stream: "st"},
		{path: "/stream16", stream: "st16", partitions: 16},
	}
	// The fault handlers' names put a partition in the first slots of a
	// master, for the resharding test.
	fxName, fxPart, fxSlot := lowSlotName(t, tc, "fx")
	fsName, fsPart, fsSlot := lowSlotName(t, tc, "fs")
	faultHandlers := []clusterHandler{
		{path: "/fault-classic", channel: "fc", partitions: 16},
		{path: "/fault-sharded", channel: fsName, sharded: true, partitions: 16},
		{path: "/fault-stream", stream: fxName, partitions: 16},
	}
	routes := ""
	for _, h := range append(slices.Clone(handlers), faultHandlers...) {
		routes += h.directive()
	}
	base, checkLog := loadSecretURL(t, auth, tc.URL(), routes, clusterPassword)

	// Guarantee 1: every stream gets each of its events exactly once, in
	// order, with named, multi-recipient and broadcast messages.
	t.Run("delivery", func(t *testing.T) {
		for _, h := range handlers {
			t.Run(h.path[1:], func(t *testing.T) {
				checkDelivery(t, base+h.path, h.publisher(cc, node), h.path)
			})
		}
	})

	// Guarantee 4 on the cluster: sharded pub/sub and streams, 16
	// partitions, three Caddy processes.
	t.Run("instances", func(t *testing.T) {
		runInstances(t, tc.URL(), func(h clusterHandler) *publish.Publisher { return h.publisher(cc, node) })
	})

	// targets are the fault handlers, classic pub/sub published through
	// node, streams with WAIT 1.
	targets := func(node redis.UniversalClient) []faultTarget {
		var out []faultTarget
		for _, h := range faultHandlers {
			pub := h.publisher(cc, node)
			if h.stream != "" {
				pub.WaitReplicas, pub.WaitTimeout = 1, 500*time.Millisecond
			}
			out = append(out, faultTarget{name: h.path[1:], url: base + h.path, pub: pub})
		}
		return out
	}
	report := func(t *testing.T, fault string, fr *faultRun, stats []faultStats) {
		for i, st := range stats {
			t.Logf("%s, %s: %d of %d deliveries published without error lost; %d received",
				fault, fr.targets[i].name, st.lost, st.expected, st.received)
		}
	}
	// readers counts the hubs of the handlers: every partition has one,
	// holding a subscription (pubsub) or reading a stream.
	readers := func(pubsubOnly bool) int {
		n := 0
		for _, h := range append(slices.Clone(handlers), faultHandlers...) {
			if h.channel != "" || !pubsubOnly {
				n += max(h.partitions, 1)
			}
		}
		return n
	}

	// Guarantee 2: a master killed, its replica promoted. Streams of users
	// on the other masters open throughout; the users of the dead master
	// may get 503 until the promotion, and no longer.
	t.Run("faults/master killed", func(t *testing.T) {
		// The victim serves the partition of the first user's stream key.
		user := scaleUsers[0]
		slot := tc.slotOf(publish.Name(fxName, publish.Partition(user, 16), 16))
		victim := tc.masterOf(slot)
		var live string
		for _, u := range scaleUsers {
			if tc.masterOf(tc.slotOf(publish.Name(fxName, publish.Partition(u, 16), 16))) != victim {
				live = u
				break
			}
		}
		var node *redis.Client
		for _, n := range tc.running() {
			if n != victim {
				node = n.Client()
				break
			}
		}
		t.Cleanup(func() { node.Close() })
		fr := startFaultRun(t, targets(node), scaleUsers)
		testkit.WaitFor(t, 30*time.Second, "publishing to start", func() bool { return fr.published() > 50 })

		victim.Stop() // SIGKILL
		killed := time.Now()
		// A user whose partition is on a live master opens a stream at once.
		testkit.OpenStream(t, testkit.Request(t, base+"/fault-stream", live+"-token"))
		// One on the dead master gets 503 until the promotion.
		resp, err := testkit.StreamClient.Do(testkit.Request(t, base+"/fault-stream", user+"-token"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		t.Logf("a new stream on the dead master's partition, %s after the kill: %d", time.Since(killed).Round(time.Millisecond), resp.StatusCode)
		// The metrics say which partition is down, and then that none is.
		down := notifyMetrics.PartitionsDown.WithLabelValues(strconv.Itoa(publish.Partition(user, 16)))
		testkit.WaitFor(t, 10*time.Second, "the dead master's partition counted down", func() bool {
			return testutil.ToFloat64(down) > 0
		})
		restore := tc.waitPromoted(victim, slot)
		t.Logf("replica promoted %s after the kill", time.Since(killed).Round(time.Millisecond))
		fr.markRecovered()
		t.Logf("every partition read again %s after the kill", time.Since(killed).Round(time.Millisecond))
		if up, d := testutil.ToFloat64(notifyMetrics.RedisSubscriptions.WithLabelValues("up")),
			testutil.ToFloat64(notifyMetrics.RedisSubscriptions.WithLabelValues("down")); up != float64(readers(false)) || d != 0 || testutil.ToFloat64(down) != 0 {
			t.Errorf("after the recovery: subscriptions up %v, down %v, partition down %v; want %d, 0, 0", up, d, testutil.ToFloat64(down), readers(false))
		}
		testkit.OpenStream(t, testkit.Request(t, base+"/fault-stream", user+"-token"))
		restore() // the old master returns as a replica: WAIT 1 can succeed again
		report(t, "master killed", fr, fr.finish())
	})

	// Guarantee 2: the slots of a stream partition and of a sharded
	// channel partition move to another master while publishing goes on.
	t.Run("faults/reshard", func(t *testing.T) {
		fr := startFaultRun(t, targets(node), scaleUsers)
		testkit.WaitFor(t, 30*time.Second, "publishing to start", func() bool { return fr.published() > 50 })
		before := testutil.ToFloat64(notifyMetrics.RedisReconnects)
		reshardSlot(t, tc, fxSlot)
		reshardSlot(t, tc, fsSlot)
		t.Logf("moved %s.%d (slot %d) and %s.%d (slot %d)", fxName, fxPart, fxSlot, fsName, fsPart, fsSlot)
		// Redis ends the sharded subscription of the moved slot: wait
		// for the module to renew it before counting losses.
		testkit.WaitFor(t, 30*time.Second, "the sharded subscription to be renewed", func() bool {
			return testutil.ToFloat64(notifyMetrics.RedisReconnects) > before
		})
		fr.markRecovered()
		report(t, "reshard", fr, fr.finish())
		tc.waitHealthy()
	})

	// Guarantee 2: every connection of every node's clients killed
	// (CLIENT KILL): subscriptions and stream readers reconnect.
	t.Run("faults/client kill", func(t *testing.T) {
		fr := startFaultRun(t, targets(node), scaleUsers)
		testkit.WaitFor(t, 30*time.Second, "publishing to start", func() bool { return fr.published() > 50 })
		before, subs := testutil.ToFloat64(notifyMetrics.RedisReconnects), readers(true)
		for _, n := range tc.running() {
			c := n.Client()
			for _, typ := range []string{"pubsub", "normal"} {
				if err := c.Do(t.Context(), "CLIENT", "KILL", "TYPE", typ, "SKIPME", "yes").Err(); err != nil {
					t.Fatalf("CLIENT KILL: %v", err)
				}
			}
			c.Close()
		}
		testkit.WaitFor(t, 30*time.Second, "every subscription to be re-established", func() bool {
			return testutil.ToFloat64(notifyMetrics.RedisReconnects) >= before+float64(subs)
		})
		fr.markRecovered()
		report(t, "client kill", fr, fr.finish())
	})

	// The cluster's password, in the URL from {env.*}, reached no log line
	// at DEBUG through the delivery and every fault.
	t.Run("no credential logged", func(t *testing.T) { checkLog() })
}

// lowSlotName returns a base name whose partition part (of 16) hashes to a
// slot among the first 32 of a master's range as redis-cli --cluster create
// assigns them (0, 5461, 10923): resharding that many slots from the
// master moves the partition, and takes a moment.
func lowSlotName(t testing.TB, tc *testCluster, prefix string) (name string, part int, slot int64) {
	t.Helper()
	for k := range 2000 {
		name = fmt.Sprintf("%s%d", prefix, k)
		for p := range 16 {
			s := tc.slotOf(publish.Name(name, p, 16))
			for _, start := range []int64{0, 5461, 10923} {
				if s >= start && s < start+32 {
					return name, p, s
				}
			}
		}
	}
	t.Fatalf("no name %s<k> with a partition in the first slots of a master", prefix)
	return "", 0, 0
}

// reshardSlot moves slot, with every slot before it in its master's range,
// to another master with redis-cli --cluster reshard, and checks it moved.
func reshardSlot(t testing.TB, tc *testCluster, slot int64) {
	t.Helper()
	from := tc.masterOf(slot)
	var to *testkit.Redis
	for _, m := range tc.masters() {
		if m != from {
			to = m
			break
		}
	}
	tc.waitHealthy() // redis-cli refuses to reshard while nodes disagree
	slots, err := slotMap(t.Context(), from)
	if err != nil {
		t.Fatal(err)
	}
	count := int64(0)
	for _, s := range slots {
		if s.master == from.Addr() {
			for x := s.start; x <= s.end && x <= slot; x++ {
				count++
			}
		}
	}
	tc.cli("--cluster", "reshard", from.Addr(), "--cluster-from", nodeID(t, from), "--cluster-to", nodeID(t, to),
		"--cluster-slots", fmt.Sprint(count), "--cluster-yes")
	tc.waitHealthy()
	if got := tc.masterOf(slot); got != to {
		t.Fatalf("slot %d is on %s after the reshard, want %s", slot, got.Addr(), to.Addr())
	}
}
