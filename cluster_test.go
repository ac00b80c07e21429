package notify

import (
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/publish"
)

// scaleUsers are the users of the scaling tests: numeric ids, which the
// auth API returns as JSON integers and messages name as integers, and
// string ids.
var scaleUsers = []string{
	"100", "101", "102", "103", "104", "105", "106", "107", "108", "109",
	"110", "111", "112", "113", "114", "115", "alice", "bob", "carol", "dave",
}

// scaleAuth answers "<id>-token" with the user id, numeric ones as integers.
func scaleAuth(t testing.TB) *authAPI {
	replies := map[string]authReply{}
	for _, u := range scaleUsers {
		body := fmt.Sprintf(`{"user_id":%q}`, u)
		if u[0] >= '0' && u[0] <= '9' {
			body = fmt.Sprintf(`{"user_id":%s}`, u)
		}
		replies[u+"-token"] = authReply{200, body}
	}
	return startAuthAPI(t, replies)
}

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
	node := tc.nodes[0].client()
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
	routes := ""
	for _, h := range handlers {
		routes += h.directive()
	}
	cfg := &caddyConfig{auth: auth, vars: map[string]string{"redis": tc.URL()}, routes: routes}
	base := cfg.load(t)

	// Guarantee 1: every stream gets each of its events exactly once, in
	// order, with named, multi-recipient and broadcast messages.
	t.Run("delivery", func(t *testing.T) {
		for _, h := range handlers {
			t.Run(h.path[1:], func(t *testing.T) {
				streams := map[string][]*sseStream{}
				for _, u := range scaleUsers {
					streams[u] = append(streams[u], openStreamWhenUp(t, base+h.path, u+"-token", ""))
				}
				streams["100"] = append(streams["100"], openStreamWhenUp(t, base+h.path, "100-token", ""))
				pub := h.publisher(cc, node)
				plan := mixedPlan(scaleUsers, 60)
				results := publishPlan(t, pub, h.path, plan)
				expectPlan(t, pub, h.path, plan, results, streams)
			})
		}
	})
}
