package gateway

import (
	"context"
	"time"

	"github.com/caddy-notify/notify/internal/index"
)

// spread calls visit once per interval for every stream of ixs (a
// handler's index in each partition), until ctx ends, spreading the calls
// evenly over the interval: one ticker cuts it into up to
// NumShards×BeatSlots ticks (no shorter than about 5 ms each), and a tick
// visits the streams of one shard whose slot matches, so that thousands of
// streams are never visited at one instant. It replaces a timer per
// stream.
func spread(ctx context.Context, interval time.Duration, ixs []*index.Index, visit func(*index.Subscriber)) {
	slots := int(min(max(interval/(index.NumShards*5*time.Millisecond), 1), index.BeatSlots))
	t := time.NewTicker(max(interval/time.Duration(index.NumShards*slots), time.Millisecond))
	defer t.Stop()
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			shard, slot := tick%index.NumShards, (tick/index.NumShards)%slots
			for _, ix := range ixs {
				ix.EachInShard(shard, func(s *index.Subscriber) {
					if s.BeatSlot()%slots == slot {
						visit(s)
					}
				})
			}
		}
	}
}

// beat pings the gateway's idle streams every interval until ctx ends.
func (g *Gateway) beat(ctx context.Context, interval time.Duration) {
	spread(ctx, interval, g.indexes, func(s *index.Subscriber) {
		if s.Owner() == g.owner {
			s.Ping()
		}
	})
}
