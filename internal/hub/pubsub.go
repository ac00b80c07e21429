package hub

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/sse"
	"github.com/caddy-notify/notify/internal/streamid"
)

// idleCheck is how long the subscription may stay silent before it is
// pinged: a half-open connection to Redis would otherwise go unnoticed.
const idleCheck = 30 * time.Second

// errSubscriptionEnded reports a subscription that Redis ended by itself.
var errSubscriptionEnded = errors.New("redis ended the subscription: the channel's slot moved")

// pubsubReader holds a hub's Redis pub/sub subscription to one channel.
// Pub/sub keeps no history: a stream receives what is published after it
// registered.
type pubsubReader struct {
	hub     *Hub
	channel string
	sharded bool                 // SSUBSCRIBE instead of SUBSCRIBE
	maxSize int                  // max_message_size
	handle  func(payload []byte) // what each message goes to

	mu     sync.Mutex // guards pubsub, which run replaces and close closes
	pubsub *redis.PubSub
	closed bool
}

// newPubsubReader subscribes (without dialing yet) to src's channel. Each
// message goes to onMessage when it is set, else to the hub's indexes
// (dispatch).
func newPubsubReader(hb *Hub, src Source, onMessage func([]byte)) *pubsubReader {
	p := &pubsubReader{hub: hb, channel: src.Channel, sharded: src.Sharded, maxSize: src.MaxMessageSize,
		pubsub: hb.client.Subscribe(context.Background())}
	p.handle = p.dispatch
	if onMessage != nil {
		p.handle = onMessage
	}
	return p
}

func (p *pubsubReader) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return p.pubsub.Close()
}

// subscribe (re)subscribes to the channel. Like Subscribe, SSubscribe
// records the channel even when it fails to dial; the next receive dials
// again and resubscribes, to the node that owns the channel's slot in a
// cluster.
func (p *pubsubReader) subscribe(ctx context.Context) error {
	if p.sharded {
		return p.pubsub.SSubscribe(ctx, p.channel)
	}
	return p.pubsub.Subscribe(ctx, p.channel)
}

// renew replaces the subscription with a new one on a new connection.
// go-redis reconnects by itself after a network error, but not when Redis
// ends the subscription: a cluster sends sunsubscribe when the channel's
// slot moves to another master (resharding), and answers MOVED to a
// subscription sent to a node that no longer owns it. Both leave a live
// connection that would never deliver again.
func (p *pubsubReader) renew(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ctx.Err()
	}
	_ = p.pubsub.Close()
	p.pubsub = p.hub.client.Subscribe(context.Background())
	p.mu.Unlock()
	return p.subscribe(ctx)
}

func (p *pubsubReader) addRoute(_ *route, publish func()) { publish() }

func (p *pubsubReader) register(_ context.Context, rt *route, sub *index.Subscriber, groups []string, _ *streamid.ID, _ int) (Preamble, error) {
	rt.ix.Add(sub)
	rt.ix.AddGroups(sub, groups)
	return Preamble{}, nil
}

// run keeps the subscription alive until ctx ends: it reconnects with
// capped exponential backoff and dispatches every message it receives.
func (p *pubsubReader) run(ctx context.Context) {
	hb := p.hub
	delay := newBackoff(hb.client)
	everUp, renew := false, false
	err := p.subscribe(ctx)
	for ctx.Err() == nil {
		if err != nil {
			hb.setUp(false, err)
			if !delay.wait(ctx) {
				return
			}
			if renew {
				renew = false
				if err = p.renew(ctx); err != nil {
					continue
				}
			}
		}
		var msg any
		msg, err = p.pubsub.ReceiveTimeout(ctx, idleCheck)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var rerr redis.Error
			switch {
			case isTimeout(err):
				err = p.pubsub.Ping(ctx)
			case errors.As(err, &rerr):
				// A reply from Redis (MOVED, CROSSSLOT...) and not a
				// broken connection: go-redis keeps it, subscribed to
				// nothing.
				renew = true
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				if everUp && !hb.IsUp() {
					hb.m.RedisReconnects.Inc()
				}
				everUp = true
				delay.reset()
				hb.setUp(true, nil)
			case "unsubscribe", "sunsubscribe":
				// Redis ended the subscription (the reader never
				// unsubscribes): the slot moved.
				err, renew = errSubscriptionEnded, true
			}
		case *redis.Message:
			p.handle(stringBytes(m.Payload))
		}
	}
}

// dispatch routes one published message to the streams of its recipients.
// The message is framed once, for every index and stream it reaches.
func (p *pubsubReader) dispatch(payload []byte) {
	hb := p.hub
	hb.m.MessagesReceived.Inc()
	if len(payload) > p.maxSize {
		hb.drop(message.TooLarge)
		return
	}
	var f *sse.Frame
	var fEvent string
	for _, rt := range *hb.snapshot.Load() {
		r, reason := message.Parse(payload, rt.ix.Key().Fields)
		var users, groups []string
		if reason == "" {
			users, groups, reason = hb.own(&r)
		}
		if reason != "" {
			hb.drop(reason)
			continue
		}
		if f == nil || fEvent != r.Event {
			f, fEvent = sse.Message(r.Event, payload), r.Event
		}
		hb.count(rt.ix.Deliver(&r, users, groups, f))
	}
}
