package notify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-notify/notify/publish"
)

// hubs holds one hubSet per distinct (Redis deployment, channel or stream,
// partitions) in this process. Handler instances of every loaded config
// share them, so a config reload with unchanged Redis settings keeps the
// subscriptions and their streams. Keys embed credentials: never log them.
var hubs = caddy.NewUsagePool()

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	// clusterBackoffMax caps the delay for a Redis Cluster: after a
	// failover, go-redis routes to the dead master until its slot map
	// reloads, which the failed attempt itself triggers; the next attempt
	// must come soon after, not up to 5 s later.
	clusterBackoffMax = time.Second
	// dropLogEvery limits how often dropped messages are logged.
	dropLogEvery = 5 * time.Second
)

// source is what a hub reads: a pub/sub channel, or a Redis Stream with the
// bounds of its in-process window. A hubSet is given the handler's source
// and gives each of its hubs the source of one partition.
type source struct {
	channel string
	stream  string
	// sharded reads the channel with SSUBSCRIBE (pub/sub mode).
	sharded bool
	// partition is the one this hub reads, of partitions (0 means 1).
	partition, partitions int
	history               historyConfig
	// maxMessageSize drops bigger messages unparsed and sizes each read
	// from a Redis Stream.
	maxMessageSize int

	// beforeRead, when set, runs before each XREAD: a seam for tests that
	// need the reader to lag behind Redis. Not part of the hub key.
	beforeRead func()
	// replays, when set, is the slots for resumes reading from Redis,
	// shared by the partitions of a hubSet. Not part of the hub key.
	replays chan struct{}
	// onMessage, when set, takes every pub/sub message instead of the
	// hub's indexes: the control channel's (control.go). Not part of the
	// hub key.
	onMessage func(payload []byte)
}

// hubKey identifies a hubSet: the same Redis deployment (kind, nodes,
// credentials, database, TLS mode, URL options) and source share one set of
// subscriptions or stream readers.
func hubKey(rc *redisConfig, src source) string {
	return fmt.Sprintf("%s %q %q %t %d %d %d %d", rc.key(), src.channel, src.stream, src.sharded, max(src.partitions, 1),
		src.history.entries, src.history.bytes, src.maxMessageSize)
}

// hub owns one reader of a source (one partition's channel or stream key)
// and the indexes of the streams that source feeds. The reader runs in one
// goroutine and dispatches every message to the indexes.
type hub struct {
	client redis.UniversalClient // the hubSet's, shared by its hubs
	reader sourceReader
	logger *zap.Logger
	// part and parts are the partition this hub reads and how many there
	// are: its indexes hold the streams of that partition's users only.
	part, parts int
	// onChange, when set, is told each change of up, with mu held.
	onChange func(up bool)

	cancel context.CancelFunc
	done   chan struct{} // closed when the reader's goroutine has returned

	mu            sync.Mutex
	up            bool
	failureLogged bool          // the current outage was logged
	upCh          chan struct{} // closed while up; replaced when the source is lost
	indexes       map[indexKey]*index
	routes        atomic.Pointer[[]*index] // snapshot of indexes for dispatch

	lastDropLog time.Time // used by the reader's goroutine only
}

// sourceReader reads a hub's source and feeds its indexes: pubsubReader
// (pubsub.go) or streamReader (redisstream.go).
type sourceReader interface {
	// run reads until ctx ends, reconnecting as needed and reporting each
	// state change with hub.setUp.
	run(ctx context.Context)
	// close unblocks a pending read once run's context is cancelled.
	close() error
	// addIndex makes a new index visible to dispatch by calling publish,
	// at a moment when no message is being dispatched if the reader keeps
	// history for it. Called with the hub's mu held.
	addIndex(ix *index, publish func())
	// register adds sub to ix so that it receives every message after
	// from (or, when from is nil, every message from now on), and returns
	// what the stream writes before its live events.
	register(ctx context.Context, ix *index, sub *subscriber, from *entryID, replayLimit int) (preamble, error)
}

// newHub creates a hub reading src through client and starts its reader
// goroutine, which dials Redis in the background: Caddy starts even when
// Redis is down.
func newHub(client redis.UniversalClient, src source, logger *zap.Logger, onChange func(up bool)) *hub {
	if src.maxMessageSize <= 0 {
		src.maxMessageSize = DefaultMaxMessageSize
	}
	ctx, cancel := context.WithCancel(context.Background())
	hb := &hub{
		client:   client,
		part:     src.partition,
		parts:    max(src.partitions, 1),
		onChange: onChange,
		logger:   logger,
		cancel:   cancel,
		done:     make(chan struct{}),
		upCh:     make(chan struct{}),
		indexes:  make(map[indexKey]*index),
	}
	hb.routes.Store(new([]*index))
	hb.countState(false, 1)
	if src.stream != "" {
		hb.reader = newStreamReader(hb, src)
	} else {
		hb.reader = newPubsubReader(hb, src.channel, src.sharded, src.maxMessageSize, src.onMessage)
	}
	go func() {
		defer close(hb.done)
		hb.reader.run(ctx)
	}()
	return hb
}

// stop stops the reader and ends every stream still attached. It runs
// once, when the last config using the hub's set is unloaded.
func (hb *hub) stop() error {
	hb.cancel()
	err := hb.reader.close()
	<-hb.done
	hb.mu.Lock()
	for _, ix := range hb.indexes {
		ix.closeAll()
	}
	hb.countState(hb.up, -1)
	hb.mu.Unlock()
	return err
}

// countState adds delta to the metrics of the hub's state: the
// subscriptions up or down and, for a partitioned hub, the partitions down.
func (hb *hub) countState(up bool, delta float64) {
	if up {
		metrics.redisSubscriptions.WithLabelValues("up").Add(delta)
		return
	}
	metrics.redisSubscriptions.WithLabelValues("down").Add(delta)
	if hb.parts > 1 {
		metrics.partitionsDown.WithLabelValues(strconv.Itoa(hb.part)).Add(delta)
	}
}

// logFields adds the hub's partition to fields, when it has one.
func (hb *hub) logFields(fields ...zap.Field) []zap.Field {
	if hb.parts > 1 {
		fields = append(fields, zap.Int("partition", hb.part))
	}
	return fields
}

// attach returns the index for the given fields, creating it on first use.
func (hb *hub) attach(key indexKey) *index {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	ix := hb.indexes[key]
	if ix == nil {
		ix = newIndex(key)
		hb.reader.addIndex(ix, func() {
			hb.indexes[key] = ix
			hb.storeRoutesLocked()
		})
	}
	ix.refs++
	return ix
}

// detach releases a handler's use of ix; the last user removes it and ends
// its streams.
func (hb *hub) detach(ix *index) {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if ix.refs--; ix.refs > 0 {
		return
	}
	delete(hb.indexes, ix.key)
	hb.storeRoutesLocked()
	ix.closeAll()
}

func (hb *hub) storeRoutesLocked() {
	routes := make([]*index, 0, len(hb.indexes))
	for _, ix := range hb.indexes {
		routes = append(routes, ix)
	}
	hb.routes.Store(&routes)
}

// register adds a new stream; see sourceReader.register.
func (hb *hub) register(ctx context.Context, ix *index, sub *subscriber, from *entryID, replayLimit int) (preamble, error) {
	return hb.reader.register(ctx, ix, sub, from, replayLimit)
}

// preamble is what a stream writes after its retry field and before its
// live events.
type preamble struct {
	position  *event   // a new stream-mode stream's starting point, or nil
	reset     *event   // sent first when history was cut, or nil
	reason    string   // the reset's reason
	replay    []*event // missed events, oldest first
	fromRedis int      // how many of replay came from Redis rather than memory
	written   func()   // if not nil, called once the preamble is written (or failed to be)
}

// frames returns the preamble's frames in order, after first.
func (p preamble) frames(first *event) []*event {
	out := make([]*event, 0, 3+len(p.replay))
	out = append(out, first)
	if p.position != nil {
		out = append(out, p.position)
	}
	if p.reset != nil {
		out = append(out, p.reset)
	}
	return append(out, p.replay...)
}

// record counts a resume in the metrics and the debug log.
func (p preamble) record(l *zap.Logger) {
	fromMemory := len(p.replay) - p.fromRedis
	metrics.replayed.WithLabelValues("memory").Add(float64(fromMemory))
	metrics.replayed.WithLabelValues("redis").Add(float64(p.fromRedis))
	if p.reason != "" {
		metrics.resets.WithLabelValues(p.reason).Inc()
	}
	if c := l.Check(zap.DebugLevel, "stream resumed"); c != nil {
		c.Write(zap.Int("replayed_memory", fromMemory), zap.Int("replayed_redis", p.fromRedis),
			zap.String("reset", p.reason))
	}
}

// isUp reports whether the source is being read.
func (hb *hub) isUp() bool {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return hb.up
}

// waitUp waits up to d for the source to be read, so that streams opened in
// the first moments after a start or reload are not refused. It reports
// whether the source is up.
func (hb *hub) waitUp(ctx context.Context, d time.Duration) bool {
	hb.mu.Lock()
	up, ch := hb.up, hb.upCh
	hb.mu.Unlock()
	return up || waitClosed(ctx, ch, d)
}

// waitClosed waits up to d for ch to be closed and reports whether it was.
func waitClosed(ctx context.Context, ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// setUp records a state change and logs it once. The first failure to
// subscribe is logged too, so a wrong or unreachable redis URL is visible at
// startup and not only as 503s.
func (hb *hub) setUp(up bool, err error) {
	if cc, ok := hb.client.(*redis.ClusterClient); ok && !up {
		// After a failover or a resharding, go-redis may still route
		// the channel or key to the old master until it reloads the
		// slots, which it otherwise does every 10 s at best. The reload
		// runs in the background, at most one at a time.
		cc.ReloadState(context.Background())
	}
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if hb.up == up && (up || hb.failureLogged) {
		return
	}
	if !up {
		hb.failureLogged = true
		if hb.up {
			hb.upCh = make(chan struct{})
			hb.countState(true, -1)
			hb.countState(false, 1)
			if hb.onChange != nil {
				hb.onChange(false)
			}
		}
		hb.up = false
		hb.logger.Warn("redis subscription unavailable; retrying", hb.logFields(zap.Error(err))...)
		return
	}
	hb.up = true
	hb.failureLogged = false
	close(hb.upCh)
	hb.countState(false, -1)
	hb.countState(true, 1)
	if hb.onChange != nil {
		hb.onChange(true)
	}
	hb.logger.Info("redis subscription established", hb.logFields()...)
}

// dropWrongPartition counts a message on a partition that none of its
// recipients belongs to: a publisher that does not use publish.Partition.
const dropWrongPartition dropReason = "wrong_partition"

// ownUsers keeps, of a message's users, those of this hub's partition: the
// others' streams are in other hubs, and their history is kept there. A
// message for none of them, and not a broadcast, was published on the
// wrong partition.
func (hb *hub) ownUsers(users []string, broadcast bool) ([]string, dropReason) {
	if hb.parts <= 1 {
		return users, ""
	}
	users = slices.DeleteFunc(users, func(u string) bool { return publish.Partition(u, hb.parts) != hb.part })
	if len(users) == 0 && !broadcast {
		return nil, dropWrongPartition
	}
	return users, ""
}

// count records what a delivery did.
func (hb *hub) count(c deliveryCounts) {
	metrics.deliveries.Add(float64(c.delivered))
	if c.overflow > 0 {
		metrics.drops.WithLabelValues(string(dropSlowClient)).Add(float64(c.overflow))
		hb.logger.Warn("slow streams closed: queue full", zap.Int("streams", c.overflow))
	}
}

// drop counts a message that reaches nobody and logs it at most once per
// dropLogEvery, so a misbehaving publisher cannot flood the log. Called from
// the reader's goroutine only.
func (hb *hub) drop(reason dropReason) {
	metrics.drops.WithLabelValues(string(reason)).Inc()
	hb.logDrop("message dropped", string(reason))
}

// logDrop logs a dropped message at most once per dropLogEvery, without
// its content. Called from the reader's goroutine only.
func (hb *hub) logDrop(msg, reason string) {
	if now := time.Now(); now.Sub(hb.lastDropLog) >= dropLogEvery {
		hb.lastDropLog = now
		if c := hb.logger.Check(zapcore.WarnLevel, msg); c != nil {
			c.Write(zap.String("reason", reason))
		}
	}
}

// backoff is the capped exponential delay between reconnection attempts.
type backoff struct {
	cur, max time.Duration
}

// newBackoff returns the hub's reconnection delay, capped lower for a
// cluster (see clusterBackoffMax).
func (hb *hub) newBackoff() *backoff {
	b := &backoff{cur: backoffMin, max: backoffMax}
	if _, ok := hb.client.(*redis.ClusterClient); ok {
		b.max = clusterBackoffMax
	}
	return b
}

// wait sleeps for the current delay, with jitter, and doubles it; it
// reports false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	d := b.cur
	b.cur = min(2*d, b.max)
	return sleepCtx(ctx, jitter(d))
}

func (b *backoff) reset() { b.cur = backoffMin }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// jitter spreads reconnects of several Caddy instances by ±20 %.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + rand.N(2*d/5+1)
}

// sleepCtx sleeps for d and reports false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
