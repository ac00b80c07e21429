// Package notify is a Caddy HTTP handler that turns a Caddy server into a
// push-notification gateway: clients hold a Server-Sent Events stream open,
// each stream is authenticated against the site's own auth API, and every
// JSON message published to a Redis channel is sent to the streams of the
// users it names in its recipient field.
package notify

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-notify/notify/publish"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the optional settings.
const (
	DefaultRedis            = "redis://127.0.0.1:6379/0"
	DefaultChannel          = "notifications"
	DefaultRecipientField   = "recipient_id"
	DefaultUserField        = "user_id"
	DefaultAuthTimeout      = 5 * time.Second
	DefaultHeartbeat        = 15 * time.Second
	DefaultRetry            = 3 * time.Second
	DefaultQueueSize        = 256
	DefaultWriteTimeout     = 10 * time.Second
	DefaultStreamField      = "data"
	DefaultReplayLimit      = 1000
	DefaultHistoryEntries   = 50_000
	DefaultHistoryBytes     = 32 << 20
	DefaultMaxMessageSize   = 1 << 20
	DefaultQueueBytes       = 4 << 20
	DefaultPresenceInterval = 10 * time.Second
	// MaxQueueSize bounds queue_size: a larger queue only delays the
	// moment a stuck client is closed while holding more memory.
	MaxQueueSize = 1000
	// DefaultAuthConcurrency is the default of auth_concurrency: as many
	// requests as connections the handler opened to the auth API before
	// the setting existed.
	DefaultAuthConcurrency = 64
	// MaxAuthConcurrency bounds auth_concurrency: a sanity limit, far
	// above what one auth API serves, that still bounds the connections
	// and goroutines one handler may hold for it.
	MaxAuthConcurrency = 10_000
	// MaxHistoryBytes bounds history_bytes: a sanity limit that catches a
	// unit typed wrong (TiB for MiB) before it becomes an out-of-memory kill.
	MaxHistoryBytes = 1 << 40
	// MaxMessageSizeLimit bounds max_message_size: Redis itself refuses
	// bulk strings over 512 MiB.
	MaxMessageSizeLimit = 512 << 20
)

// Handler streams the Redis messages addressed to the authenticated user as
// Server-Sent Events. It ends the middleware chain: it never calls the next
// handler.
type Handler struct {
	// Redis, as a URL: redis://[user:password@]host:port[/db] for one
	// server (rediss:// for TLS);
	// redis+sentinel://[user:password@]host:port[,host:port...][/db]?master_name=NAME
	// for a master behind Redis Sentinel (rediss+sentinel:// for TLS; the
	// sentinel_username and sentinel_password options authenticate to the
	// sentinels, user:password@ to the data nodes); or
	// redis+cluster://[user:password@]host:port[,host:port...] for a Redis
	// Cluster (rediss+cluster:// for TLS; the nodes listed are seeds).
	// go-redis's query options (dial_timeout, pool_size...) apply. Global
	// placeholders such as {env.REDIS_URL} are resolved at provision time.
	// Default: redis://127.0.0.1:6379/0.
	Redis string `json:"redis,omitempty"`

	// Pub/sub channel carrying the JSON messages. Default: notifications
	// (unless Stream is set).
	Channel string `json:"channel,omitempty"`

	// Pub/sub mode: read the channel with sharded pub/sub (SSUBSCRIBE;
	// publishers use SPUBLISH), so that in a Redis Cluster a channel's
	// traffic stays on the shard that owns it. Needs Redis 7.
	Sharded bool `json:"sharded,omitempty"`

	// With n > 1, read <channel>.0 ... <channel>.<n-1> (stream mode: the
	// stream keys <stream>.0 ... <stream>.<n-1>) instead of the channel or
	// stream: a user's streams read partition crc32(user id) mod n only, and
	// publishers put each message on the partition of each recipient (see
	// the publish package). Default: 1, at most 1024.
	Partitions int `json:"partitions,omitempty"`

	// Redis Stream to read instead of a pub/sub channel: durable delivery,
	// with each event's entry ID as its SSE id and Last-Event-ID resume.
	// Channel and Stream are alternatives.
	Stream string `json:"stream,omitempty"`

	// Stream mode: the entry field holding the message JSON. Default: data.
	// This and the three settings below are refused without Stream.
	StreamField string `json:"stream_field,omitempty"`

	// Stream mode: the most events one resuming stream is replayed; past
	// it the client gets a reset event and the newest ReplayLimit events.
	// Default: 1000.
	ReplayLimit int `json:"replay_limit,omitempty"`

	// Stream mode: how many recent entries are kept in memory to serve
	// resuming streams without Redis, split evenly between the partitions.
	// Default: 50000.
	HistoryEntries int `json:"history_entries,omitempty"`

	// Stream mode: the most bytes of entries kept in memory, split evenly
	// between the partitions. Default: 32 MiB, at most 1 TiB.
	HistoryBytes int `json:"history_bytes,omitempty"`

	// JSON field of each message that names its recipient: a string, an
	// integer, or an array of those. Default: recipient_id.
	RecipientField string `json:"recipient_field,omitempty"`

	// Auth API endpoint. Each new stream makes a GET to it with the client's
	// token as "Authorization: Bearer <token>" and the client's Cookie
	// header. Required: an absolute http:// or https:// URL once global
	// placeholders such as {env.AUTH_URL} are resolved at provision time.
	AuthURL string `json:"auth_url,omitempty"`

	// JSON field of the auth API's 200 response holding the user id (a
	// non-empty string or an integer). Default: user_id.
	UserField string `json:"user_field,omitempty"`

	// Longest wait for the auth API; past it the client gets 504.
	// Default: 5s.
	AuthTimeout caddy.Duration `json:"auth_timeout,omitempty"`

	// How long a successful auth answer is reused for new streams with the
	// same token and cookies. Off (0) by default: a token revoked at the
	// auth API keeps opening streams until its entry expires.
	AuthCache caddy.Duration `json:"auth_cache,omitempty"`

	// The most auth API requests this handler has in flight at once: a
	// request sent keeps its slot until the auth API answers or
	// AuthTimeout passes, even when the client has left. Checks waiting
	// for a slot are served in turn across client addresses, so one
	// address's backlog cannot hold up another's. Default: 64, at most
	// 10000.
	AuthConcurrency int `json:"auth_concurrency,omitempty"`

	// How often each open stream's credentials (the token and the Cookie
	// header it was opened with) are checked again against the auth API.
	// A 401, a 403 or another user id ends the stream with a revoked event;
	// an auth API that is down, answers 5xx or times out ends none. Off (0)
	// by default.
	Reauth caddy.Duration `json:"reauth,omitempty"`

	// The most open streams of one user on this handler, in this Caddy
	// instance; past it, 429. Off (0) by default.
	MaxStreamsPerUser int `json:"max_streams_per_user,omitempty"`

	// The most open streams on this handler, in this Caddy instance; past
	// it, 503 before the auth API is asked. Off (0) by default.
	MaxStreams int `json:"max_streams,omitempty"`

	// A Redis pub/sub channel on the same Redis, read by every instance,
	// on which the application ends users' streams: {"disconnect": <user
	// id or array of ids>}, or {"disconnect": "*"} for every stream. Read
	// with sharded pub/sub when Sharded is on. Off when empty.
	ControlChannel string `json:"control_channel,omitempty"`

	// A Redis sorted set the module keeps with the ids of the users who
	// have an open stream on any instance, scored with the Unix time in
	// milliseconds until which they count as online: ZSCORE <key> <id> >=
	// now means online. Off when empty.
	Presence string `json:"presence,omitempty"`

	// How often each instance refreshes its users in Presence; a user
	// counts as online for three intervals after the last refresh, so goes
	// offline at most that long after its last stream closes. Default: 10s.
	PresenceInterval caddy.Duration `json:"presence_interval,omitempty"`

	// Query parameter from which the token is also accepted when the request
	// has no Authorization header. Off when empty. Beware: query strings
	// land in access logs and browser history.
	TokenQuery string `json:"token_query,omitempty"`

	// Cookie from which the token is also accepted when the request has no
	// Authorization header (and no token in TokenQuery). Off when empty.
	TokenCookie string `json:"token_cookie,omitempty"`

	// Interval between heartbeat comments on an idle stream. 0 turns them
	// off. Default (when unset): 15s.
	Heartbeat *caddy.Duration `json:"heartbeat,omitempty"`

	// Reconnection delay sent to clients in the SSE retry field at the start
	// of each stream. Default: 3s.
	Retry caddy.Duration `json:"retry,omitempty"`

	// Deliver messages whose recipient is "*" to every stream of this
	// handler. When off, such messages reach nobody here.
	Broadcast bool `json:"broadcast,omitempty"`

	// Origins allowed to open streams from another origin, each as
	// scheme://host[:port]; or "*" alone for any origin, in which case
	// credentials are never allowed, which is why it cannot be combined
	// with listed origins. Off when empty.
	CORS []string `json:"cors,omitempty"`

	// Events that may wait for one slow stream; when exceeded the stream is
	// closed and the client reconnects. Default: 256, at most 1000.
	QueueSize int `json:"queue_size,omitempty"`

	// Longest time one write to a client may take before the stream is
	// closed; it also detects dead connections at the next heartbeat.
	// Default: 10s.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`

	// The largest message (pub/sub) or stream entry (all its fields) that
	// is delivered, in bytes; a bigger one is dropped and counted as
	// too_large without being parsed. It also sizes every read from a
	// Redis Stream (see README, "Memory"). Default: 1 MiB.
	MaxMessageSize int `json:"max_message_size,omitempty"`

	// The most bytes of events that may wait for one stream, counting what
	// it is writing; past it the stream is closed like a full queue_size
	// (the client reconnects). At least max_message_size. Default: 4 MiB.
	QueueBytes int `json:"queue_bytes,omitempty"`

	redisURL    string // Redis with placeholders resolved
	heartbeat   time.Duration
	tokens      tokenSource
	cors        corsPolicy
	auth        *authClient
	hubSet      *hubSet
	hubKey      string
	indexes     []*index // by partition
	group       *streamGroup
	retryFrame  *event // every stream's first frame
	retryAfter  string // the retry delay in whole seconds, for Retry-After
	limits      *streamLimits
	presence    *presence // nil when presence is off
	presenceKey string
	control     *controlChannel // nil when control_channel is off
	controlKey  string
	controlTo   *controlTarget
	reauth      *reauther       // nil when reauth is off
	conns       *connWatch      // the hijacked streams
	stopCtx     context.Context // done when this config starts stopping
	stop        context.CancelFunc
	logger      *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.notify",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults, attaches the shared Redis hub and arranges for
// streams to end when the config stops. It does not dial Redis: the hub does
// that in the background, so Caddy starts while Redis is down.
//
// Caddy calls Provision before Validate. Provision therefore checks nothing
// itself: failing here would report the first mistake only, worded apart
// from Validate's (issue 7). Instead, an invalid config builds nothing (no
// hub, no auth client, no goroutine) and Provision returns nil, so that
// Caddy goes on to Validate, which reports every mistake, and then to
// Cleanup, which copes with the missing state.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.applyDefaults()
	if h.Validate() != nil {
		return nil
	}

	h.redisURL = resolvePlaceholders(h.Redis)
	rc, err := redisOptions(h.redisURL)
	if err != nil {
		// Unreachable (Validate parsed the same URL). The error never
		// quotes the URL, which may hold a password.
		return fmt.Errorf("notify: redis: %w", err)
	}
	h.setUpRequests(resolvePlaceholders(h.AuthURL))

	if err := metrics.register(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}

	h.stopCtx, h.stop = context.WithCancel(ctx)
	events, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading events app: %w", err)
	}
	// Caddy waits for active requests before cleaning up a config, and its
	// default grace period is unlimited: streams must end themselves when
	// their config starts stopping, or reloads and exits would hang.
	if err := events.(*caddyevents.App).On("stopping", stopOnEvent(h.stop)); err != nil {
		return fmt.Errorf("watching stopping event: %w", err)
	}
	// Hijacked streams have no goroutine waiting for the stop: it ends
	// them all at once.
	h.conns.stopOn(h.stopCtx)

	src := source{channel: h.Channel, sharded: h.Sharded, partitions: h.Partitions, maxMessageSize: h.MaxMessageSize}
	ixKey := indexKey{recipientField: h.RecipientField}
	if h.Stream != "" {
		src = source{stream: h.Stream, partitions: h.Partitions,
			history:        historyConfig{entries: h.HistoryEntries, bytes: h.HistoryBytes},
			maxMessageSize: h.MaxMessageSize}
		ixKey.dataField = h.StreamField
	}
	key := hubKey(rc, src)
	v, _, err := hubs.LoadOrNew(key, func() (caddy.Destructor, error) {
		// A pooled hub outlives this config: it gets the process logger.
		return newHubSet(rc, src, caddy.Log().Named("notify.hub")), nil
	})
	if err != nil {
		return fmt.Errorf("creating redis hub: %w", err)
	}
	h.hubSet, h.hubKey = v.(*hubSet), key // set only on success: Cleanup relies on it
	h.indexes = h.hubSet.attach(ixKey)

	if h.heartbeat > 0 {
		go h.group.beat(h.stopCtx, h.indexes)
	}
	if h.ControlChannel != "" {
		// Read with SSUBSCRIBE like the main channel; a stream-mode
		// handler's control channel is classic pub/sub.
		sharded := h.Sharded && h.Stream == ""
		key := "control " + rc.key() + fmt.Sprintf(" %q %t", h.ControlChannel, sharded)
		v, _, err := hubs.LoadOrNew(key, func() (caddy.Destructor, error) {
			return newControlChannel(rc, h.ControlChannel, sharded, caddy.Log().Named("notify.control")), nil
		})
		if err != nil {
			return fmt.Errorf("creating control channel: %w", err)
		}
		h.control, h.controlKey = v.(*controlChannel), key
		h.controlTo = &controlTarget{group: h.group, indexes: h.indexes}
		h.control.add(h.controlTo)
	}
	if h.Presence != "" {
		key := "presence " + rc.key() + fmt.Sprintf(" %q %d", h.Presence, h.PresenceInterval)
		v, _, err := hubs.LoadOrNew(key, func() (caddy.Destructor, error) {
			client, clientKey := acquireClient(rc, "", 0)
			p := newPresence(client, h.Presence, time.Duration(h.PresenceInterval), caddy.Log().Named("notify.presence"))
			p.clientKey = clientKey
			return p, nil
		})
		if err != nil {
			return fmt.Errorf("creating presence keeper: %w", err)
		}
		h.presence, h.presenceKey = v.(*presence), key
	}
	if h.Reauth > 0 {
		h.reauth = newReauther(time.Duration(h.Reauth), h.auth, h.logger)
		go h.reauth.run(h.stopCtx)
	}
	return nil
}

// setUpRequests builds what serving requests needs besides Redis: token
// sources, CORS, the auth client, the retry frame, the limits and the
// streams' group. Part of Provision, on a config Validate accepted.
func (h *Handler) setUpRequests(authURL string) {
	h.tokens = tokenSource{query: h.TokenQuery, cookie: h.TokenCookie}
	h.cors = newCORSPolicy(h.CORS)
	h.auth = newAuthClient(authURL, h.UserField, time.Duration(h.AuthTimeout), time.Duration(h.AuthCache), h.AuthConcurrency, h.logger)
	h.retryFrame = retryEvent(time.Duration(h.Retry))
	h.retryAfter = strconv.Itoa(int((time.Duration(h.Retry) + time.Second - 1) / time.Second))
	h.limits = newStreamLimits(h.MaxStreams, h.MaxStreamsPerUser)
	h.group = &streamGroup{heartbeat: h.heartbeat}
	h.conns = new(connWatch)
}

func (h *Handler) applyDefaults() {
	if h.Redis == "" {
		h.Redis = DefaultRedis
	}
	if h.Channel == "" && h.Stream == "" {
		h.Channel = DefaultChannel
	}
	if h.Stream != "" {
		if h.StreamField == "" {
			h.StreamField = DefaultStreamField
		}
		if h.ReplayLimit == 0 {
			h.ReplayLimit = DefaultReplayLimit
		}
		if h.HistoryEntries == 0 {
			h.HistoryEntries = DefaultHistoryEntries
		}
		if h.HistoryBytes == 0 {
			h.HistoryBytes = DefaultHistoryBytes
		}
	}
	if h.RecipientField == "" {
		h.RecipientField = DefaultRecipientField
	}
	if h.UserField == "" {
		h.UserField = DefaultUserField
	}
	if h.AuthTimeout == 0 {
		h.AuthTimeout = caddy.Duration(DefaultAuthTimeout)
	}
	if h.AuthConcurrency == 0 {
		h.AuthConcurrency = DefaultAuthConcurrency
	}
	h.heartbeat = DefaultHeartbeat
	if h.Heartbeat != nil {
		h.heartbeat = time.Duration(*h.Heartbeat)
	}
	if h.Retry == 0 {
		h.Retry = caddy.Duration(DefaultRetry)
	}
	if h.Partitions == 0 {
		h.Partitions = 1
	}
	if h.QueueSize == 0 {
		h.QueueSize = DefaultQueueSize
	}
	if h.WriteTimeout == 0 {
		h.WriteTimeout = caddy.Duration(DefaultWriteTimeout)
	}
	if h.Presence != "" && h.PresenceInterval == 0 {
		h.PresenceInterval = caddy.Duration(DefaultPresenceInterval)
	}
	if h.MaxMessageSize == 0 {
		h.MaxMessageSize = DefaultMaxMessageSize
	}
	if h.QueueBytes == 0 {
		h.QueueBytes = max(DefaultQueueBytes, h.MaxMessageSize)
	}
}

// Validate is the one rulebook of the configuration: the Caddyfile parser
// checks syntax only and leaves meaning here, so a Caddyfile and a JSON
// config get the same message for the same mistake. It checks the config as
// it will run: with defaults applied (to a copy, as Validate must not modify
// h; Provision has normally applied them already) and global placeholders
// resolved. It reports every mistake, one per line, in the order of the
// struct's fields. Each line names the setting as it is written in the
// Caddyfile and in JSON, after "notify:" so that the lines below the first,
// which Caddy prints without its module path, still say where they are from.
func (h *Handler) Validate() error {
	c := *h
	c.applyDefaults()
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("notify: "+format, args...))
	}
	nonNegative := func(name string, d caddy.Duration) {
		if d < 0 {
			fail("%s must not be negative", name)
		}
	}

	checkSource(fail, c.Redis, c.Channel, c.Stream, c.Sharded, c.Partitions)
	// Defaults only fill the stream settings when Stream is set, so without
	// it any of them was set by the user and would be silently ignored.
	streamOnly := func(name string, set bool) {
		if set && c.Stream == "" {
			fail("%s applies to stream mode only: set stream, or remove %s", name, name)
		}
	}
	streamOnly("stream_field", c.StreamField != "")
	streamOnly("replay_limit", c.ReplayLimit != 0)
	if c.Stream != "" && c.ReplayLimit < 1 {
		fail("replay_limit must be a positive whole number")
	}
	streamOnly("history_entries", c.HistoryEntries != 0)
	if c.Stream != "" && c.HistoryEntries < 1 {
		fail("history_entries must be a positive whole number")
	}
	streamOnly("history_bytes", c.HistoryBytes != 0)
	// int64: on 32-bit platforms MaxHistoryBytes does not fit an int.
	if c.Stream != "" && (c.HistoryBytes < 1 || int64(c.HistoryBytes) > MaxHistoryBytes) {
		fail("history_bytes must be a size from 1 byte to 1 TiB")
	}
	if err := checkAuthURL(c.AuthURL); err != nil {
		fail("%v", err)
	}
	nonNegative("auth_timeout", c.AuthTimeout)
	nonNegative("auth_cache", c.AuthCache)
	if c.AuthConcurrency < 1 || c.AuthConcurrency > MaxAuthConcurrency {
		fail("auth_concurrency must be a whole number from 1 to %d", MaxAuthConcurrency)
	}
	nonNegative("reauth", c.Reauth)
	if c.MaxStreamsPerUser < 0 {
		fail("max_streams_per_user must not be negative")
	}
	if c.MaxStreams < 0 {
		fail("max_streams must not be negative")
	}
	if c.ControlChannel != "" && c.Channel != "" {
		for i := range max(c.Partitions, 1) {
			if c.ControlChannel == publish.Name(c.Channel, i, c.Partitions) {
				fail("control_channel must not be a channel the messages come on")
				break
			}
		}
	}
	if c.PresenceInterval < 0 {
		fail("presence_interval must not be negative")
	} else if c.PresenceInterval > 0 && c.Presence == "" {
		fail("presence_interval applies to presence only: set presence, or remove presence_interval")
	}
	if c.Heartbeat != nil {
		nonNegative("heartbeat", *c.Heartbeat)
	}
	nonNegative("retry", c.Retry)
	anyOrigin := false
	for _, o := range c.CORS {
		if err := checkOrigin(o); err != nil {
			fail("cors: %v", err)
		}
		anyOrigin = anyOrigin || o == "*"
	}
	if anyOrigin && slices.ContainsFunc(c.CORS, func(o string) bool { return o != "*" }) {
		// Listed origins get credentials and "*" never does: which one
		// the user meant cannot be guessed.
		fail(`cors: "*" allows any origin without credentials; it cannot be combined with listed origins`)
	}
	if c.QueueSize < 1 || c.QueueSize > MaxQueueSize {
		fail("queue_size must be a whole number from 1 to %d", MaxQueueSize)
	}
	nonNegative("write_timeout", c.WriteTimeout)
	if c.MaxMessageSize < 1 || c.MaxMessageSize > MaxMessageSizeLimit {
		fail("max_message_size must be a size from 1 byte to 512 MiB")
	}
	if c.QueueBytes < c.MaxMessageSize {
		fail("queue_bytes must be at least max_message_size (%d bytes)", c.MaxMessageSize)
	}
	return errors.Join(errs...)
}

// checkSource checks the settings notify and notify_publish share, with
// the same messages for both: the Redis URL, where messages come from, and
// how they are spread. It is given the defaults-applied values.
func checkSource(fail func(format string, args ...any), redis, channel, stream string, sharded bool, partitions int) {
	if err := checkRedisURL(resolvePlaceholders(redis)); err != nil {
		// The URL may hold a password: the error never echoes it, nor
		// what a placeholder in it resolved to.
		if hasPlaceholder(redis) {
			fail("redis: once placeholders are resolved, %v", err)
		} else {
			fail("redis: %v", err)
		}
	}
	if channel != "" && stream != "" {
		// Defaults only fill Channel when Stream is empty: both were set.
		fail("channel and stream are alternatives: set one")
	}
	if sharded && stream != "" {
		fail("sharded applies to pub/sub mode only: a stream is read with XREAD, which a cluster routes to its shard anyway")
	}
	if partitions < 1 || partitions > publish.MaxPartitions {
		fail("partitions must be a whole number from 1 to %d", publish.MaxPartitions)
	}
}

// Cleanup ends this instance's streams and releases its share of the hub.
// Caddy also calls it after a failed Provision, so it tolerates nil state.
func (h *Handler) Cleanup() error {
	if h.stop != nil {
		h.stop()
	}
	if h.auth != nil {
		h.auth.close()
	}
	var errs []error
	if h.control != nil {
		h.control.remove(h.controlTo)
		_, err := hubs.Delete(h.controlKey)
		errs = append(errs, err)
	}
	if h.presence != nil {
		_, err := hubs.Delete(h.presenceKey)
		errs = append(errs, err)
	}
	if h.hubSet != nil {
		h.hubSet.detach(h.indexes)
		_, err := hubs.Delete(h.hubKey)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// stopOnEvent adapts a cancel func to caddyevents.Handler.
type stopOnEvent context.CancelFunc

// Handle cancels the stream context of the config that is stopping.
func (f stopOnEvent) Handle(context.Context, caddy.Event) error {
	f()
	return nil
}

// checkAuthURL checks auth_url as written (raw) and once its global
// placeholders are resolved, naming the placeholder when it is the cause.
func checkAuthURL(raw string) error {
	if raw == "" {
		return errors.New("auth_url is required")
	}
	u := resolvePlaceholders(raw)
	switch {
	case u == "":
		return fmt.Errorf("auth_url %s resolves to an empty value", raw)
	case hasPlaceholder(u):
		// Only global placeholders ({env.*}, {file.*}, {system.*}) are
		// known at startup; request ones would differ for each request.
		return fmt.Errorf("auth_url %s holds a placeholder that is unknown at startup; only global ones such as {env.AUTH_URL} are resolved", raw)
	}
	if err := checkHTTPURL(u); err != nil {
		return fmt.Errorf("auth_url: %w", err)
	}
	return nil
}

// checkHTTPURL requires an absolute http or https URL. It never echoes a
// password the URL may hold.
func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL; keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("not a valid URL: %v", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http:// or https:// URL", u.Redacted())
	}
	return nil
}

// checkRedisURL reports whether raw is a Redis URL the module accepts; the
// error says why without quoting it.
func checkRedisURL(raw string) error {
	_, err := redisOptions(raw)
	return err
}

// hasPlaceholder reports whether s holds a placeholder: one to resolve, or,
// after resolvePlaceholders, one that could not be.
func hasPlaceholder(s string) bool { return strings.Contains(s, "{") }

// resolvePlaceholders replaces the global placeholders in s ({env.*} and
// the like); request placeholders, unknown at startup, are left in place.
func resolvePlaceholders(s string) string { return caddy.NewReplacer().ReplaceKnown(s, "") }

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
	_ caddy.Destructor            = (*hubSet)(nil)
	_ caddyevents.Handler         = stopOnEvent(nil)
)
