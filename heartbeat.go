package notify

import (
	"context"
	"time"
)

// maxBeatSlots is how many ticks, at most, share one shard's heartbeats.
const maxBeatSlots = 16

// heartbeat pings the idle streams of one handler. One ticker per handler
// replaces a timer per stream: the interval is cut into up to
// numShards×maxBeatSlots ticks (no shorter than about 5 ms each), and a tick
// pings the streams of one shard whose random slot matches, so pings are
// spread evenly over the interval instead of thousands of them competing
// with events at one instant.
type heartbeat struct {
	interval time.Duration
	slots    int
}

func newHeartbeat(interval time.Duration) *heartbeat {
	slots := int(min(max(interval/(numShards*5*time.Millisecond), 1), maxBeatSlots))
	return &heartbeat{interval: interval, slots: slots}
}

// run pings the streams of ixs (a handler's index in each partition) that
// this heartbeat covers (an index may be shared by handlers with other
// intervals) until ctx ends.
func (hb *heartbeat) run(ctx context.Context, ixs []*index) {
	t := time.NewTicker(max(hb.interval/time.Duration(numShards*hb.slots), time.Millisecond))
	defer t.Stop()
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			shard, slot := tick%numShards, (tick/numShards)%hb.slots
			for _, ix := range ixs {
				ix.eachInShard(shard, func(s *subscriber) {
					if s.beat == hb && int(s.beatSlot)%hb.slots == slot {
						s.ping()
					}
				})
			}
		}
	}
}
