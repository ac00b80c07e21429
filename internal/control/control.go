// Package control reads the control channel (control_channel): a Redis
// pub/sub channel, read by every instance, on which the application ends
// streams, for instance at sign-out, a password change or a ban:
//
//	PUBLISH <control_channel> '{"disconnect": 42}'
//	PUBLISH <control_channel> '{"disconnect": [42, "alice"]}'
//	PUBLISH <control_channel> '{"disconnect_group": "org:7"}'
//	PUBLISH <control_channel> '{"disconnect": "*"}'
//
// Every open stream of those users (of members of those groups; of every
// user for "*") ends with event: revoked / data: {"reason":"disconnected"}.
// Ids follow the rules of recipients (package message): integers by their
// exact text. "*" means everyone only as the whole value: in an array it is
// an invalid element. An invalid element of a list is dropped and counted,
// and the rest of the list applies: a sign-out must not fail for a
// neighbour's sake.
package control

import (
	"sync"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/hub"
	"github.com/caddy-notify/notify/internal/jsonscan"
	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/sse"
)

// The fields of a control message naming the users and the groups.
const (
	usersField  = "disconnect"
	groupsField = "disconnect_group"
)

// maxControlMessage bounds a control message: it names users, nothing more.
const maxControlMessage = 1 << 20

// Channel reads one control channel for every handler of the process that
// names it, across reloads.
type Channel struct {
	hub    *hub.Hub // its subscription, with the hub's reconnects and state logs
	logger *zap.Logger
	m      *metrics.Set

	mu      sync.Mutex
	targets map[Target]struct{}
}

// Target is the streams of one handler, which a control message may end.
type Target interface {
	// Disconnect ends the streams of users and of members of groups, or
	// every stream when all is set, with a revoked event, and returns how
	// many it ended.
	Disconnect(users, groups []string, all bool) int
}

// New subscribes to channel through client (without dialing yet).
func New(client redis.UniversalClient, channel string, sharded bool, logger *zap.Logger, m *metrics.Set) *Channel {
	c := &Channel{logger: logger, m: m, targets: make(map[Target]struct{})}
	c.hub = hub.New(client, hub.Source{Channel: channel, Sharded: sharded, MaxMessageSize: maxControlMessage},
		hub.Options{Logger: logger, Metrics: m, OnMessage: c.handle})
	return c
}

// Stop ends the subscription, once the last handler naming the channel is
// gone.
func (c *Channel) Stop() error { return c.hub.Stop() }

// Add makes t's streams subject to the channel's messages.
func (c *Channel) Add(t Target) {
	c.mu.Lock()
	c.targets[t] = struct{}{}
	c.mu.Unlock()
}

// Remove undoes Add.
func (c *Channel) Remove(t Target) {
	c.mu.Lock()
	delete(c.targets, t)
	c.mu.Unlock()
}

// order is what a control message asks.
type order struct {
	users, groups []string
	all           bool
	// invalidUsers and invalidGroups count the elements dropped.
	invalidUsers, invalidGroups int
}

// parse reads a control message: the outcome is "" when it asks something,
// else why it is dropped whole.
func parse(payload []byte) (o order, drop message.Drop) {
	var raw [2][]byte
	if !jsonscan.Members(payload, []string{usersField, groupsField}, raw[:]) {
		return order{}, message.Malformed
	}
	if v := raw[0]; v != nil {
		if id, ok, valid := message.ScalarID(v); v[0] != '[' {
			switch {
			case !valid:
				o.invalidUsers++
			case ok && id == message.Broadcast:
				o.all = true
			case ok:
				o.users = []string{id}
			}
		} else {
			c := jsonscan.ElementsOf(v)
			for e := c.Next(); e != nil; e = c.Next() {
				id, ok, valid := message.ScalarID(e)
				switch {
				case !valid || (ok && id == message.Broadcast):
					o.invalidUsers++
				case ok:
					o.users = append(o.users, id)
				}
			}
		}
	}
	if v := raw[1]; v != nil && string(v) != "null" {
		if v[0] != '[' {
			v = append(append([]byte{'['}, v...), ']')
		}
		c := jsonscan.ElementsOf(v)
		for e := c.Next(); e != nil; e = c.Next() {
			if g, ok := message.Groups(e); ok && len(g) == 1 && e[0] == '"' {
				o.groups = append(o.groups, g[0])
			} else {
				o.invalidGroups++
			}
		}
	}
	if !o.all && len(o.users) == 0 && len(o.groups) == 0 && o.invalidUsers+o.invalidGroups == 0 {
		return order{}, message.NoRecipient
	}
	return o, ""
}

// handle carries out one control message.
func (c *Channel) handle(payload []byte) {
	if len(payload) > maxControlMessage {
		c.count(string(message.TooLarge))
		return
	}
	o, reason := parse(payload)
	if reason != "" {
		c.count(string(reason))
		return
	}
	if o.invalidUsers > 0 {
		c.count(string(message.InvalidRecipient))
	}
	if o.invalidGroups > 0 {
		c.count(string(message.InvalidGroup))
	}
	if !o.all && len(o.users) == 0 && len(o.groups) == 0 {
		return // nothing valid was named
	}
	c.count("disconnect")
	c.mu.Lock()
	targets := make([]Target, 0, len(c.targets))
	for t := range c.targets {
		targets = append(targets, t)
	}
	c.mu.Unlock()
	n := 0
	for _, t := range targets {
		n += t.Disconnect(o.users, o.groups, o.all)
	}
	c.m.Revoked.WithLabelValues(sse.RevokedDisconnected).Add(float64(n))
	if ce := c.logger.Check(zap.InfoLevel, "streams disconnected"); ce != nil {
		ce.Write(zap.Int("users", len(o.users)), zap.Int("groups", len(o.groups)), zap.Bool("all", o.all), zap.Int("streams", n))
	}
}

// count records a control message by outcome; dropped ones are logged at
// most once per interval by the hub.
func (c *Channel) count(outcome string) {
	c.m.ControlMessages.WithLabelValues(outcome).Inc()
	if outcome != "disconnect" {
		c.hub.LogDrop("control message dropped", outcome)
	}
}
