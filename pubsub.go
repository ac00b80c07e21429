package notify

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// idleCheck is how long the subscription may stay silent before it is
// pinged: a half-open connection to Redis would otherwise go unnoticed.
const idleCheck = 30 * time.Second

// pubsubReader holds a hub's Redis pub/sub subscription to one channel.
// Pub/sub keeps no history: a stream receives what is published after it
// registered.
type pubsubReader struct {
	hub     *hub
	channel string
	maxSize int // max_message_size
	pubsub  *redis.PubSub
}

func newPubsubReader(hb *hub, channel string, maxSize int) *pubsubReader {
	// No channel yet: this does not dial.
	return &pubsubReader{hub: hb, channel: channel, maxSize: maxSize, pubsub: hb.client.Subscribe(context.Background())}
}

func (p *pubsubReader) close() error { return p.pubsub.Close() }

func (p *pubsubReader) addIndex(_ *index, publish func()) { publish() }

func (p *pubsubReader) register(_ context.Context, ix *index, sub *subscriber, _ *entryID, _ int) (preamble, error) {
	ix.add(sub)
	return preamble{}, nil
}

// run keeps the subscription alive until ctx ends: it reconnects with
// capped exponential backoff and dispatches every message it receives.
func (p *pubsubReader) run(ctx context.Context) {
	hb := p.hub
	delay := backoff(backoffMin)
	everUp := false
	// Subscribe records the channel even when it fails to dial; the next
	// receive dials again and resubscribes.
	err := p.pubsub.Subscribe(ctx, p.channel)
	for ctx.Err() == nil {
		if err != nil {
			hb.setUp(false, err)
			if !delay.wait(ctx) {
				return
			}
		}
		var msg any
		msg, err = p.pubsub.ReceiveTimeout(ctx, idleCheck)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if isTimeout(err) {
				err = p.pubsub.Ping(ctx)
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				if everUp && !hb.isUp() {
					metrics.redisReconnects.Inc()
				}
				everUp = true
				delay.reset()
				hb.setUp(true, nil)
			}
		case *redis.Message:
			p.dispatch(stringBytes(m.Payload))
		}
	}
}

// dispatch routes one published message to the streams of its recipients.
// The message is framed once, for every index and stream it reaches.
func (p *pubsubReader) dispatch(payload []byte) {
	hb := p.hub
	metrics.messagesReceived.Inc()
	if len(payload) > p.maxSize {
		hb.drop(dropTooLarge)
		return
	}
	var ev *event
	for _, ix := range *hb.routes.Load() {
		users, broadcast, reason := route(payload, ix.key.recipientField)
		if reason != "" {
			hb.drop(reason)
			continue
		}
		if ev == nil {
			ev = messageEvent(payload)
		}
		hb.count(ix.deliver(users, broadcast, ev))
	}
}
