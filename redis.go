package notify

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
)

// hubs holds one hub per distinct (Redis server, channel or stream) in this
// process.
// Handler instances of every loaded config share them, so a config reload
// with unchanged Redis settings keeps the subscription and its streams.
// Keys embed credentials: never log them.
var hubs = caddy.NewUsagePool()

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	// idleCheck is how long the subscription may stay silent before it is
	// pinged: a half-open connection to Redis would otherwise go unnoticed.
	idleCheck = 30 * time.Second
	// dropLogEvery limits how often dropped messages are logged.
	dropLogEvery = 5 * time.Second
)

// redisOptions parses a redis:// or rediss:// URL, query options included
// (dial_timeout, pool_size, max_retries, ...), into options for a
// UniversalClient, so Sentinel and Cluster deployments can be added as
// further options without changing the hub.
func redisOptions(rawURL string) (*redis.UniversalOptions, error) {
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	name := o.ClientName
	if name == "" {
		name = "caddy-notify"
	}
	return &redis.UniversalOptions{
		Addrs:           []string{o.Addr},
		ClientName:      name,
		Protocol:        o.Protocol,
		Username:        o.Username,
		Password:        o.Password,
		DB:              o.DB,
		MaxRetries:      o.MaxRetries,
		MinRetryBackoff: o.MinRetryBackoff,
		MaxRetryBackoff: o.MaxRetryBackoff,
		DialTimeout:     o.DialTimeout,
		ReadTimeout:     o.ReadTimeout,
		WriteTimeout:    o.WriteTimeout,
		PoolFIFO:        o.PoolFIFO,
		PoolSize:        o.PoolSize,
		PoolTimeout:     o.PoolTimeout,
		MinIdleConns:    o.MinIdleConns,
		MaxIdleConns:    o.MaxIdleConns,
		MaxActiveConns:  o.MaxActiveConns,
		ConnMaxIdleTime: o.ConnMaxIdleTime,
		ConnMaxLifetime: o.ConnMaxLifetime,
		TLSConfig:       o.TLSConfig,
	}, nil
}

// source is what a hub reads: a pub/sub channel, or a Redis Stream with the
// bounds of its in-process window.
type source struct {
	channel string
	stream  string
	history historyConfig

	// beforeRead, when set, runs before each XREAD: a seam for tests that
	// need the reader to lag behind Redis. Not part of the hub key.
	beforeRead func()
}

// hubKey identifies a hub: the same server, credentials, database, TLS mode,
// URL options and source share one subscription or stream reader.
func hubKey(rawURL string, o *redis.UniversalOptions, src source) string {
	tlsName := "-"
	if o.TLSConfig != nil {
		tlsName = "tls:" + o.TLSConfig.ServerName
	}
	query := ""
	if u, err := url.Parse(rawURL); err == nil {
		query = u.Query().Encode()
	}
	return fmt.Sprintf("%q %q %q %d %s %q %q %q %d %d", o.Addrs, o.Username, o.Password, o.DB, tlsName, query,
		src.channel, src.stream, src.history.entries, src.history.bytes)
}

// hub owns one Redis pub/sub subscription, or one stream reader, and the
// indexes of the streams fed by it. One goroutine reads Redis and
// dispatches each message.
type hub struct {
	client redis.UniversalClient
	pubsub *redis.PubSub // pub/sub mode
	source string        // channel or stream key
	logger *zap.Logger

	// Stream mode: the window of recent entries; winMu also guards the
	// indexes' histories and is held while an entry is dispatched.
	stream     bool
	hist       historyConfig
	beforeRead func()
	winMu      sync.Mutex
	win        *window

	cancel context.CancelFunc
	done   chan struct{}

	mu            sync.Mutex
	up            bool
	failureLogged bool          // the current outage was logged
	upCh          chan struct{} // closed while up; replaced when the subscription is lost
	indexes       map[indexKey]*index
	routes        atomic.Pointer[[]*index] // snapshot of indexes for dispatch

	lastDropLog time.Time // used by the dispatch goroutine only
}

// newHub creates a hub and starts its reader goroutine, which dials Redis in
// the background: Caddy starts even when Redis is down.
func newHub(opts *redis.UniversalOptions, src source, logger *zap.Logger) *hub {
	client := redis.NewUniversalClient(opts)
	ctx, cancel := context.WithCancel(context.Background())
	hb := &hub{
		client:  client,
		source:  src.channel,
		logger:  logger,
		cancel:  cancel,
		done:    make(chan struct{}),
		upCh:    make(chan struct{}),
		indexes: make(map[indexKey]*index),
	}
	hb.routes.Store(new([]*index))
	metrics.redisSubscriptions.WithLabelValues("down").Inc()
	if src.stream != "" {
		hb.stream, hb.source, hb.hist, hb.beforeRead = true, src.stream, src.history, src.beforeRead
		hb.win = newWindow(src.history)
		go hb.runStream(ctx)
		return hb
	}
	hb.pubsub = client.Subscribe(ctx) // no channel yet: does not dial
	go hb.run(ctx)
	return hb
}

// Destruct stops the subscription and ends every stream still attached. It
// runs once, when the last config using the hub is unloaded.
func (hb *hub) Destruct() error {
	hb.cancel()
	var err error
	if hb.pubsub != nil {
		err = hb.pubsub.Close() // unblocks a pending receive
	}
	<-hb.done
	hb.mu.Lock()
	for _, ix := range hb.indexes {
		ix.closeAll()
	}
	if hb.up {
		metrics.redisSubscriptions.WithLabelValues("up").Dec()
	} else {
		metrics.redisSubscriptions.WithLabelValues("down").Dec()
	}
	hb.mu.Unlock()
	return errors.Join(err, hb.client.Close())
}

// indexKey names an index: streams that read messages from the same entry
// field (stream mode) and recipients from the same JSON field share one.
type indexKey struct {
	dataField      string
	recipientField string
}

// attach returns the index for the given fields, creating it on first use.
func (hb *hub) attach(key indexKey) *index {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	ix := hb.indexes[key]
	if ix == nil {
		ix = newIndex(key.recipientField)
		ix.dataField = key.dataField
		if hb.stream {
			// Dispatch must not run between building the history and
			// publishing the index, or an entry would be missed.
			hb.winMu.Lock()
			hb.rebuildHistory(ix)
			hb.indexes[key] = ix
			hb.storeRoutesLocked()
			hb.winMu.Unlock()
		} else {
			hb.indexes[key] = ix
			hb.storeRoutesLocked()
		}
	}
	ix.refs++
	return ix
}

// detach releases a handler's use of ix; the last user removes it.
func (hb *hub) detach(ix *index) {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if ix.refs--; ix.refs > 0 {
		return
	}
	delete(hb.indexes, indexKey{ix.dataField, ix.field})
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

// isUp reports whether the subscription is established.
func (hb *hub) isUp() bool {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return hb.up
}

// waitUp waits up to d for the subscription to be established, so that
// streams opened in the first moments after a start or reload are not
// refused. It reports whether the subscription is up.
func (hb *hub) waitUp(ctx context.Context, d time.Duration) bool {
	hb.mu.Lock()
	up, ch := hb.up, hb.upCh
	hb.mu.Unlock()
	if up {
		return true
	}
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
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if hb.up == up && (up || hb.failureLogged) {
		return
	}
	if !up {
		hb.failureLogged = true
		if hb.up {
			hb.upCh = make(chan struct{})
			metrics.redisSubscriptions.WithLabelValues("up").Dec()
			metrics.redisSubscriptions.WithLabelValues("down").Inc()
		}
		hb.up = false
		hb.logger.Warn("redis subscription unavailable; retrying", zap.Error(err))
		return
	}
	hb.up = true
	hb.failureLogged = false
	close(hb.upCh)
	metrics.redisSubscriptions.WithLabelValues("down").Dec()
	metrics.redisSubscriptions.WithLabelValues("up").Inc()
	hb.logger.Info("redis subscription established")
}

// run keeps the subscription alive until ctx ends: it reconnects with
// capped exponential backoff and dispatches every message it receives.
func (hb *hub) run(ctx context.Context) {
	defer close(hb.done)
	backoff := backoffMin
	everUp := false
	// Subscribe records the channel even when it fails to dial; the next
	// receive dials again and resubscribes.
	err := hb.pubsub.Subscribe(ctx, hb.source)
	for ctx.Err() == nil {
		if err != nil {
			hb.setUp(false, err)
			if !sleepCtx(ctx, jitter(backoff)) {
				return
			}
			backoff = min(backoff*2, backoffMax)
		}
		var msg any
		msg, err = hb.pubsub.ReceiveTimeout(ctx, idleCheck)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if isTimeout(err) {
				err = hb.pubsub.Ping(ctx)
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
				backoff = backoffMin
				hb.setUp(true, nil)
			}
		case *redis.Message:
			hb.dispatch([]byte(m.Payload))
		}
	}
}

// dispatch routes one published message to the streams of its recipients.
func (hb *hub) dispatch(payload []byte) {
	metrics.messagesReceived.Inc()
	var ev *event
	for _, ix := range *hb.routes.Load() {
		users, broadcast, reason := route(payload, ix.field)
		if reason != "" {
			hb.drop(reason)
			continue
		}
		if ev == nil {
			ev = &event{wire: appendEvent(nil, "", payload)}
		}
		hb.count(ix.deliver(users, broadcast, ev))
	}
}

// count records what a dispatch did.
func (hb *hub) count(c deliveryCounts) {
	metrics.deliveries.Add(float64(c.delivered))
	if c.overflow > 0 {
		metrics.drops.WithLabelValues(string(dropSlowClient)).Add(float64(c.overflow))
		hb.logger.Warn("slow streams closed: queue full", zap.Int("streams", c.overflow))
	}
}

// drop counts a message that reaches nobody and logs it at most once per
// dropLogEvery, so a misbehaving publisher cannot flood the log.
func (hb *hub) drop(reason dropReason) {
	metrics.drops.WithLabelValues(string(reason)).Inc()
	if now := time.Now(); now.Sub(hb.lastDropLog) >= dropLogEvery {
		hb.lastDropLog = now
		if c := hb.logger.Check(zapcore.WarnLevel, "message dropped"); c != nil {
			c.Write(zap.String("reason", string(reason)))
		}
	}
}

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
