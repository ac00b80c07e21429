// Package control reads the control channel (control_channel): a Redis
// pub/sub channel, read by every instance, on which the application ends
// users' streams, for instance at sign-out, a password change or a ban:
//
//	PUBLISH <control_channel> '{"disconnect": 42}'
//	PUBLISH <control_channel> '{"disconnect": [42, "alice"]}'
//	PUBLISH <control_channel> '{"disconnect": "*"}'
//
// Every open stream of those users (of every user, for "*") ends with
// event: revoked / data: {"reason":"disconnected"}. Ids follow the rules
// of recipients (package message): integers by their exact text, and a
// message naming an invalid id is dropped and counted.
package control

import (
	"sync"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/hub"
	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/sse"
)

// controlField is the field of a control message naming the users.
const controlField = "disconnect"

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
	// Disconnect ends the streams of users, or every stream when all is
	// set, with a revoked event, and returns how many it ended.
	Disconnect(users []string, all bool) int
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

// handle carries out one control message.
func (c *Channel) handle(payload []byte) {
	if len(payload) > maxControlMessage {
		c.count(string(message.TooLarge))
		return
	}
	users, all, reason := message.Route(payload, controlField)
	if reason != "" {
		c.count(string(reason))
		return
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
		n += t.Disconnect(users, all)
	}
	c.m.Revoked.WithLabelValues(sse.RevokedDisconnected).Add(float64(n))
	if ce := c.logger.Check(zap.InfoLevel, "streams disconnected"); ce != nil {
		ce.Write(zap.Int("users", len(users)), zap.Bool("all", all), zap.Int("streams", n))
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
