package notify

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-notify/notify/publish"
)

// hubSet is what the hubs pool holds for one Redis deployment and source:
// its go-redis client (from the clients pool, shared with the other users
// of the same settings) and a hub per partition, each reading its own
// channel (<channel>.<i>) or stream key (<stream>.<i>), or the channel or
// stream itself with one partition. A stream registers with the hub of its
// user's partition only (publish.Partition), which is where publishers put
// every message for that user and every broadcast: so each stream gets
// each of its messages once.
type hubSet struct {
	client  redis.UniversalClient
	poolKey string // for releaseClient
	hubs    []*hub

	mu    sync.Mutex
	upN   int           // hubs up
	anyUp chan struct{} // closed while upN > 0
}

// newHubSet takes the client from the clients pool (without dialing) and
// starts one hub per partition. In stream mode the window's bounds
// (history_entries, history_bytes) and the byte budget of a read are split
// evenly between the partitions, and resumes reading from Redis share one set of slots,
// so that partitions leave every memory bound of stream mode as it is.
func newHubSet(rc *redisConfig, src source, logger *zap.Logger) *hubSet {
	n := max(src.partitions, 1)
	// In stream mode, each partition's reader holds a pooled connection
	// while it blocks in XREAD: acquireClient sizes the pool for them.
	client, key := acquireClient(rc, src.stream, n)
	hs := &hubSet{client: client, poolKey: key, hubs: make([]*hub, n), anyUp: make(chan struct{})}
	part := src
	part.partitions = n
	if src.stream != "" {
		part.history = historyConfig{entries: max(src.history.entries/n, 1), bytes: max(src.history.bytes/n, 1)}
		part.replays = make(chan struct{}, maxReplays)
	}
	for i := range n {
		part.partition = i
		part.channel = ""
		if src.channel != "" {
			part.channel = publish.Name(src.channel, i, n)
		}
		if src.stream != "" {
			part.stream = publish.Name(src.stream, i, n)
		}
		hs.hubs[i] = newHub(hs.client, part, logger, hs.changed)
	}
	return hs
}

// changed counts a hub going up or down; called with that hub's mu held.
func (hs *hubSet) changed(up bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if up {
		if hs.upN++; hs.upN == 1 {
			close(hs.anyUp)
		}
		return
	}
	if hs.upN--; hs.upN == 0 {
		hs.anyUp = make(chan struct{})
	}
}

// Destruct stops every hub, which ends their streams, then releases the
// client (closed when no other user holds it). It runs once, when the last
// config using the set is unloaded.
func (hs *hubSet) Destruct() error {
	errs := make([]error, 0, len(hs.hubs)+1)
	for _, hb := range hs.hubs {
		errs = append(errs, hb.stop())
	}
	return errors.Join(append(errs, releaseClient(hs.poolKey))...)
}

// attach returns the index for key in every partition, by partition.
func (hs *hubSet) attach(key indexKey) []*index {
	ixs := make([]*index, len(hs.hubs))
	for i, hb := range hs.hubs {
		ixs[i] = hb.attach(key)
	}
	return ixs
}

// detach releases a handler's use of the indexes attach returned.
func (hs *hubSet) detach(ixs []*index) {
	for i, hb := range hs.hubs {
		hb.detach(ixs[i])
	}
}

// partition returns the hub of user's partition.
func (hs *hubSet) partition(user string) (int, *hub) {
	i := publish.Partition(user, len(hs.hubs))
	return i, hs.hubs[i]
}

// waitUp waits up to d for at least one partition to be read, and reports
// whether one is: a new stream checks it before calling the auth API, so
// that clients retrying during an outage do not load it, and then waits
// for its own partition (hub.waitUp).
func (hs *hubSet) waitUp(ctx context.Context, d time.Duration) bool {
	if len(hs.hubs) == 1 {
		return hs.hubs[0].waitUp(ctx, d)
	}
	hs.mu.Lock()
	up, ch := hs.upN > 0, hs.anyUp
	hs.mu.Unlock()
	return up || waitClosed(ctx, ch, d)
}

// isUp reports whether every partition is being read.
func (hs *hubSet) isUp() bool {
	for _, hb := range hs.hubs {
		if !hb.isUp() {
			return false
		}
	}
	return true
}
