package notify

import (
	"errors"
	"sync"

	"go.uber.org/zap"

	"github.com/caddy-notify/notify/publish"
)

// The control channel (control_channel): a Redis pub/sub channel, read by
// every instance, on which the application ends users' streams, for
// instance at sign-out, a password change or a ban:
//
//	PUBLISH <control_channel> '{"disconnect": 42}'
//	PUBLISH <control_channel> '{"disconnect": [42, "alice"]}'
//	PUBLISH <control_channel> '{"disconnect": "*"}'
//
// Every open stream of those users (of every user, for "*") ends with
// event: revoked / data: {"reason":"disconnected"}. Ids follow the rules
// of recipients (recipients.go): integers by their exact text, and a
// message naming an invalid id is dropped and counted.

// controlField is the field of a control message naming the users.
const controlField = "disconnect"

// maxControlMessage bounds a control message: it names users, nothing more.
const maxControlMessage = 1 << 20

// controlChannel reads one control channel for every handler of the
// process that names it, across reloads; the hubs pool holds it.
type controlChannel struct {
	clientKey string // its client's key in the clients pool
	hub       *hub   // its subscription, with the hub's reconnects and state logs
	logger    *zap.Logger

	mu      sync.Mutex
	targets map[*controlTarget]struct{}
}

// controlTarget is one handler's streams: its group in the indexes of its
// partitions.
type controlTarget struct {
	group   *streamGroup
	indexes []*index // by partition
}

// newControlChannel subscribes to channel with the process's pub/sub
// client for rc (clientpool.go).
func newControlChannel(rc *redisConfig, channel string, sharded bool, logger *zap.Logger) *controlChannel {
	client, key := acquireClient(rc, "", 0)
	c := &controlChannel{clientKey: key, logger: logger, targets: make(map[*controlTarget]struct{})}
	c.hub = newHub(client, source{channel: channel, sharded: sharded, onMessage: c.handle}, logger, nil)
	return c
}

// Destruct ends the subscription when the last config naming the channel
// is unloaded.
func (c *controlChannel) Destruct() error {
	return errors.Join(c.hub.stop(), releaseClient(c.clientKey))
}

func (c *controlChannel) add(t *controlTarget) {
	c.mu.Lock()
	c.targets[t] = struct{}{}
	c.mu.Unlock()
}

func (c *controlChannel) remove(t *controlTarget) {
	c.mu.Lock()
	delete(c.targets, t)
	c.mu.Unlock()
}

// handle carries out one control message.
func (c *controlChannel) handle(payload []byte) {
	if len(payload) > maxControlMessage {
		c.count(string(dropTooLarge))
		return
	}
	users, all, reason := route(payload, controlField)
	if reason != "" {
		c.count(string(reason))
		return
	}
	c.count("disconnect")
	c.mu.Lock()
	targets := make([]*controlTarget, 0, len(c.targets))
	for t := range c.targets {
		targets = append(targets, t)
	}
	c.mu.Unlock()
	n := 0
	for _, t := range targets {
		n += t.disconnect(users, all)
	}
	metrics.revoked.WithLabelValues(revokedDisconnected).Add(float64(n))
	if c := c.logger.Check(zap.InfoLevel, "streams disconnected"); c != nil {
		c.Write(zap.Int("users", len(users)), zap.Bool("all", all), zap.Int("streams", n))
	}
}

// count records a control message by outcome; dropped ones are logged at
// most once per dropLogEvery by the hub.
func (c *controlChannel) count(outcome string) {
	metrics.controlMessages.WithLabelValues(outcome).Inc()
	if outcome != "disconnect" {
		c.hub.logDrop("control message dropped", outcome)
	}
}

// disconnect revokes the target's streams of users, or all of them, and
// returns how many it ended. A user's streams are in its partition's index.
func (t *controlTarget) disconnect(users []string, all bool) int {
	n := 0
	revoke := func(s *subscriber) {
		if s.group == t.group && s.revoke(revokedEvent(revokedDisconnected)) {
			n++
		}
	}
	if all {
		for _, ix := range t.indexes {
			for i := range ix.shards {
				ix.eachInShard(i, revoke)
			}
		}
		return n
	}
	for _, u := range users {
		t.indexes[publish.Partition(u, len(t.indexes))].eachOfUser(u, revoke)
	}
	return n
}
