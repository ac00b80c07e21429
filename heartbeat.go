package notify

import (
	"context"
	"time"
)

// maxBeatSlots is how many ticks, at most, share one shard's turn.
const maxBeatSlots = 16

// spread calls visit once per interval for every stream of ixs (a
// handler's index in each partition), until ctx ends, spreading the calls
// evenly over the interval: one ticker cuts it into up to
// numShards×maxBeatSlots ticks (no shorter than about 5 ms each), and a
// tick visits the streams of one shard whose random slot matches, so that
// thousands of streams are never visited at one instant. It replaces a
// timer per stream.
func spread(ctx context.Context, interval time.Duration, ixs []*index, visit func(*subscriber)) {
	slots := int(min(max(interval/(numShards*5*time.Millisecond), 1), maxBeatSlots))
	t := time.NewTicker(max(interval/time.Duration(numShards*slots), time.Millisecond))
	defer t.Stop()
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			shard, slot := tick%numShards, (tick/numShards)%slots
			for _, ix := range ixs {
				ix.eachInShard(shard, func(s *subscriber) {
					if int(s.beatSlot)%slots == slot {
						visit(s)
					}
				})
			}
		}
	}
}

// streamGroup identifies the streams of one handler in an index that
// several handlers may share (same Redis source and fields): its heartbeat
// and its control channel act on its own streams only.
type streamGroup struct {
	heartbeat time.Duration // 0: off
}

// beat pings the group's idle streams in ixs until ctx ends.
func (g *streamGroup) beat(ctx context.Context, ixs []*index) {
	spread(ctx, g.heartbeat, ixs, func(s *subscriber) {
		if s.group == g {
			s.ping()
		}
	})
}
