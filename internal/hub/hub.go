// Package hub reads messages from Redis and hands them to the indexes of
// the streams they are for. A Hub owns one reader of one source (a pub/sub
// channel, pubsub.go, or a Redis Stream, xread.go) in one goroutine, which
// reconnects by itself and dispatches every message to the indexes
// attached to it; a Set is the hubs of the partitions of one source. In
// stream mode a Hub also keeps the newest entries in memory (window.go)
// and resumes streams from a Last-Event-ID (replay.go).
package hub

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/streamid"
	"github.com/caddy-notify/notify/publish"
)

// dropLogEvery limits how often dropped messages are logged.
const dropLogEvery = 5 * time.Second

// Source is what a hub reads: a pub/sub channel, or a Redis Stream with the
// bounds of its in-process window.
type Source struct {
	Channel string
	Stream  string
	// Sharded reads the channel with SSUBSCRIBE (pub/sub mode).
	Sharded bool
	// Partition is the one this hub reads, of Partitions (0 means 1). A
	// Set gives each of its hubs the source of one partition.
	Partition, Partitions int
	// History bounds the window of a stream reader.
	History History
	// MaxMessageSize drops bigger messages unparsed and sizes each read
	// from a Redis Stream. It must be positive.
	MaxMessageSize int
}

// History bounds the in-process window of recent stream entries.
type History struct {
	Entries int
	Bytes   int
}

// Options are what a hub is given besides its source.
type Options struct {
	Logger  *zap.Logger
	Metrics *metrics.Set
	// OnMessage, when set, takes every pub/sub message instead of the
	// hub's indexes: the control channel's reader.
	OnMessage func(payload []byte)
	// BeforeRead, when set, runs before each XREAD: a seam for tests that
	// need the reader to lag behind Redis.
	BeforeRead func()

	// onChange, when set, is told each change of up, with the hub's mu
	// held: the Set's count of partitions up.
	onChange func(up bool)
	// replays, when set, is the slots for resumes reading from Redis,
	// shared by the partitions of a Set.
	replays chan struct{}
}

// Hub owns one reader of a source (one partition's channel or stream key)
// and the indexes of the streams that source feeds. The reader runs in one
// goroutine and dispatches every message to the indexes.
type Hub struct {
	client redis.UniversalClient // shared with other hubs and publishers
	reader sourceReader
	logger *zap.Logger
	m      *metrics.Set
	// part and parts are the partition this hub reads and how many there
	// are: its indexes hold the streams of that partition's users only.
	part, parts int
	// groupsEverywhere: a group's messages are on every partition (stream
	// mode), not on the group's own.
	groupsEverywhere bool
	onChange         func(up bool)

	cancel context.CancelFunc
	done   chan struct{} // closed when the reader's goroutine has returned

	mu            sync.Mutex
	up            bool
	failureLogged bool          // the current outage was logged
	upCh          chan struct{} // closed while up; replaced when the source is lost
	routes        map[index.Key]*route
	snapshot      atomic.Pointer[[]*route] // of routes, for dispatch without mu

	lastDropLog time.Time // used by the reader's goroutine only
}

// route is an index attached to the hub, with its users' history in the
// window (stream mode, guarded by the stream reader's mutex).
type route struct {
	ix   *index.Index
	refs int // handlers using it; guarded by the hub's mu
	hist userHistory
}

// sourceReader reads a hub's source and feeds its indexes: pubsubReader
// (pubsub.go) or streamReader (xread.go).
type sourceReader interface {
	// run reads until ctx ends, reconnecting as needed and reporting each
	// state change with hub.setUp.
	run(ctx context.Context)
	// close unblocks a pending read once run's context is cancelled.
	close() error
	// addRoute makes a new route visible to dispatch by calling publish,
	// at a moment when no message is being dispatched if the reader keeps
	// history for it. Called with the hub's mu held.
	addRoute(rt *route, publish func())
	// register adds sub to rt's index, as a stream of its user and a
	// member of groups, so that it receives every message after from (or,
	// when from is nil, every message from now on), and returns what the
	// stream writes before its live events.
	register(ctx context.Context, rt *route, sub *index.Subscriber, groups []string, from *streamid.ID, replayLimit int) (Preamble, error)
}

// New creates a hub reading src through client and starts its reader
// goroutine, which dials Redis in the background: Caddy starts even when
// Redis is down.
func New(client redis.UniversalClient, src Source, opts Options) *Hub {
	ctx, cancel := context.WithCancel(context.Background())
	hb := &Hub{
		client:           client,
		part:             src.Partition,
		parts:            max(src.Partitions, 1),
		groupsEverywhere: src.Stream != "",
		onChange:         opts.onChange,
		logger:           opts.Logger,
		m:                opts.Metrics,
		cancel:           cancel,
		done:             make(chan struct{}),
		upCh:             make(chan struct{}),
		routes:           make(map[index.Key]*route),
	}
	hb.snapshot.Store(new([]*route))
	hb.countState(false, 1)
	if src.Stream != "" {
		hb.reader = newStreamReader(hb, src, opts)
	} else {
		hb.reader = newPubsubReader(hb, src, opts.OnMessage)
	}
	go func() {
		defer close(hb.done)
		hb.reader.run(ctx)
	}()
	return hb
}

// Stop stops the reader and ends every stream still attached. It runs
// once, when the last user of the hub is gone.
func (hb *Hub) Stop() error {
	hb.cancel()
	err := hb.reader.close()
	<-hb.done
	hb.mu.Lock()
	for _, rt := range hb.routes {
		rt.ix.CloseAll()
	}
	hb.countState(hb.up, -1)
	hb.mu.Unlock()
	return err
}

// countState adds delta to the metrics of the hub's state: the
// subscriptions up or down and, for a partitioned hub, the partitions down.
func (hb *Hub) countState(up bool, delta float64) {
	if up {
		hb.m.RedisSubscriptions.WithLabelValues("up").Add(delta)
		return
	}
	hb.m.RedisSubscriptions.WithLabelValues("down").Add(delta)
	if hb.parts > 1 {
		hb.m.PartitionsDown.WithLabelValues(strconv.Itoa(hb.part)).Add(delta)
	}
}

// logFields adds the hub's partition to fields, when it has one.
func (hb *Hub) logFields(fields ...zap.Field) []zap.Field {
	if hb.parts > 1 {
		fields = append(fields, zap.Int("partition", hb.part))
	}
	return fields
}

// Attach returns the index for key, creating it on first use. Every
// Attach is matched by a Detach.
func (hb *Hub) Attach(key index.Key) *index.Index {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	rt := hb.routes[key]
	if rt == nil {
		rt = &route{ix: index.New(key)}
		hb.reader.addRoute(rt, func() {
			hb.routes[key] = rt
			hb.storeSnapshotLocked()
		})
	}
	rt.refs++
	return rt.ix
}

// Detach releases a handler's use of ix; the last user removes it and ends
// its streams.
func (hb *Hub) Detach(ix *index.Index) {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	rt := hb.routes[ix.Key()]
	if rt == nil || rt.ix != ix {
		return
	}
	if rt.refs--; rt.refs > 0 {
		return
	}
	delete(hb.routes, ix.Key())
	hb.storeSnapshotLocked()
	ix.CloseAll()
}

func (hb *Hub) storeSnapshotLocked() {
	routes := make([]*route, 0, len(hb.routes))
	for _, rt := range hb.routes {
		routes = append(routes, rt)
	}
	hb.snapshot.Store(&routes)
}

// Register adds a new stream, sub, to ix (which Attach returned), as a
// stream of its user and a member of groups (those ix delivers), so that it
// receives every message after from (in stream mode; nil: every message
// from now on), and returns what the stream writes before its live events.
func (hb *Hub) Register(ctx context.Context, ix *index.Index, sub *index.Subscriber, groups []string, from *streamid.ID, replayLimit int) (Preamble, error) {
	hb.mu.Lock()
	rt := hb.routes[ix.Key()]
	hb.mu.Unlock()
	return hb.reader.register(ctx, rt, sub, groups, from, replayLimit)
}

// IsUp reports whether the source is being read.
func (hb *Hub) IsUp() bool {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return hb.up
}

// WaitUp waits up to d for the source to be read, so that streams opened in
// the first moments after a start or reload are not refused. It reports
// whether the source is up.
func (hb *Hub) WaitUp(ctx context.Context, d time.Duration) bool {
	hb.mu.Lock()
	up, ch := hb.up, hb.upCh
	hb.mu.Unlock()
	return up || waitClosed(ctx, ch, d)
}

// setUp records a state change and logs it once. The first failure to
// subscribe is logged too, so a wrong or unreachable redis URL is visible at
// startup and not only as 503s.
func (hb *Hub) setUp(up bool, err error) {
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

// own returns what of r this hub's indexes deliver: the users of its
// partition (the others' streams are in other hubs, and their history is
// kept there) and the groups it delivers (in pub/sub mode those of its
// partition, whose members register here; in stream mode every group, whose
// messages every partition's stream holds). A message with none of them,
// and not a broadcast, was published on the wrong partition.
func (hb *Hub) own(r *message.Route) (users, groups []string, drop message.Drop) {
	if hb.parts <= 1 {
		return r.Users, r.Groups, ""
	}
	for _, u := range r.Users {
		if publish.Partition(u, hb.parts) == hb.part {
			users = append(users, u)
		}
	}
	if hb.groupsEverywhere {
		groups = r.Groups
	} else {
		for _, g := range r.Groups {
			if publish.Partition(g, hb.parts) == hb.part {
				groups = append(groups, g)
			}
		}
	}
	if len(users) == 0 && len(groups) == 0 && !r.Broadcast {
		return nil, nil, message.WrongPartition
	}
	return users, groups, ""
}

// count records what a delivery did.
func (hb *Hub) count(c index.Counts) {
	hb.m.Deliveries.Add(float64(c.Delivered))
	if c.Overflow > 0 {
		hb.m.Drops.WithLabelValues(string(message.SlowClient)).Add(float64(c.Overflow))
		hb.logger.Warn("slow streams closed: queue full", zap.Int("streams", c.Overflow))
	}
}

// drop counts a message that reaches nobody and logs it at most once per
// dropLogEvery, so a misbehaving publisher cannot flood the log. Called from
// the reader's goroutine only.
func (hb *Hub) drop(reason message.Drop) {
	hb.m.Drops.WithLabelValues(string(reason)).Inc()
	hb.LogDrop("message dropped", string(reason))
}

// LogDrop logs a dropped message at most once per dropLogEvery, without
// its content. Called from the reader's goroutine only (OnMessage's
// included).
func (hb *Hub) LogDrop(msg, reason string) {
	if now := time.Now(); now.Sub(hb.lastDropLog) >= dropLogEvery {
		hb.lastDropLog = now
		if c := hb.logger.Check(zapcore.WarnLevel, msg); c != nil {
			c.Write(zap.String("reason", reason))
		}
	}
}

// stringBytes returns the bytes of s without copying them, for a message
// that is only read: go-redis hands messages over as strings, and copying a
// large one would double what it costs while it is delivered.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
