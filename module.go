// Package notify is a Caddy HTTP handler that turns a Caddy server into a
// push-notification gateway: clients hold a Server-Sent Events stream open,
// each stream is authenticated against the site's own auth API, and every
// JSON message published to a Redis channel or stream is sent to the
// streams of the users it names in its recipient field.
//
// This package is the Caddy layer: the two handlers (notify and
// notify_publish), their configuration and Caddyfile syntax, metrics
// registration, and the pools of what outlives a config. The engine they
// drive lives in internal/ (see CONTRIBUTING.md for a message's walk
// through it).
package notify

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/auth"
	"github.com/caddy-notify/notify/internal/control"
	"github.com/caddy-notify/notify/internal/gateway"
	"github.com/caddy-notify/notify/internal/hub"
	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/presence"
	"github.com/caddy-notify/notify/internal/redisurl"
	"github.com/caddy-notify/notify/internal/sse"
	"github.com/caddy-notify/notify/publish"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults and bounds of notify's own settings (the source's are in
// source.go).
const (
	defaultUserField        = "user_id"
	defaultGroupField       = "groups"
	defaultAuthTimeout      = 5 * time.Second
	defaultHeartbeat        = 15 * time.Second
	defaultRetry            = 3 * time.Second
	defaultQueueSize        = 256
	defaultWriteTimeout     = 10 * time.Second
	defaultReplayLimit      = 1000
	defaultHistoryEntries   = 50_000
	defaultHistoryBytes     = 32 << 20
	defaultQueueBytes       = 4 << 20
	defaultPresenceInterval = 10 * time.Second
	defaultReloadDrain      = 10 * time.Second
	// maxQueueSize bounds queue_size: a larger queue only delays the
	// moment a stuck client is closed while holding more memory.
	maxQueueSize = 1000
	// defaultAuthConcurrency is as many requests as connections the
	// handler once opened to the auth API.
	defaultAuthConcurrency = 64
	// maxAuthConcurrency bounds auth_concurrency: a sanity limit, far
	// above what one auth API serves, that still bounds the connections
	// and goroutines one handler may hold for it.
	maxAuthConcurrency = 10_000
	// maxHistoryBytes bounds history_bytes: a sanity limit that catches a
	// unit typed wrong (TiB for MiB) before it becomes an out-of-memory kill.
	maxHistoryBytes = 1 << 40
)

// Handler streams the Redis messages addressed to the authenticated user as
// Server-Sent Events. It ends the middleware chain: it never calls the next
// handler.
type Handler struct {
	// Where the messages are, and the rules they are read by: shared with
	// notify_publish.
	Source

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

	// Auth API endpoint. Each new stream makes a GET to it with the client's
	// token as "Authorization: Bearer <token>" and the client's Cookie
	// header. Required: an absolute http:// or https:// URL once global
	// placeholders such as {env.AUTH_URL} are resolved at provision time.
	AuthURL string `json:"auth_url,omitempty"`

	// JSON field of the auth API's 200 response holding the user id (a
	// non-empty string or an integer). Default: user_id.
	UserField string `json:"user_field,omitempty"`

	// JSON field of the auth API's 200 response holding the user's groups:
	// an array of strings (group names, each 1 to 256 bytes of UTF-8, at
	// most 1024), or null or absent for none. A malformed value fails the
	// check with 502. A message naming one of a stream's groups in its
	// group_field reaches it; with reauth, the groups are refreshed at
	// each check. Off by default: streams have no groups.
	GroupsField string `json:"groups_field,omitempty"`

	// JSON field of each message naming its event: a string of 1 to 64
	// bytes without control characters is written as "event: <name>",
	// which browsers dispatch to addEventListener(name). Any other value,
	// or none, leaves the event unnamed ("message"); the message is never
	// dropped for it. "reset" and "revoked" are the module's own: a message
	// naming them stays unnamed. Off by default.
	EventField string `json:"event_field,omitempty"`

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
	// id or array of ids>}, {"disconnect_group": <group or array of
	// groups>}, or {"disconnect": "*"} for every stream ("*" only as the
	// whole value). Read with sharded pub/sub when Sharded is on. Off when
	// empty.
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

	// The most bytes of events that may wait for one stream, counting what
	// it is writing; past it the stream is closed like a full queue_size
	// (the client reconnects). At least max_message_size. Default: 4 MiB,
	// or max_message_size when that is larger.
	QueueBytes int `json:"queue_bytes,omitempty"`

	// HTTP/1.1 streams are taken over from Caddy once authenticated: their
	// connection is hijacked, so that an idle stream holds no goroutine
	// and none of Caddy's per-request state (about 3 KiB per idle stream
	// instead of about 11 KiB). A taken-over stream skips what Caddy does
	// when a response ends or is written: deferred `header` operations,
	// `encode`, and the access log's status, size and duration (logged
	// when the stream starts). false keeps HTTP/1.1 streams in Caddy's
	// hands, as HTTP/2 and HTTP/3 streams always are. Default: true.
	Takeover *bool `json:"takeover,omitempty"`

	// When a config reload leaves no handler with this one's identity (a
	// setting that decides what its streams receive or who their users
	// are changed, or the handler is gone), its open streams end, each
	// cleanly, spread evenly over this window, so that their clients do
	// not all reconnect at once; 0 ends them at once. Streams of a handler
	// whose identity the reload leaves as it was stay open. A stop of the
	// process ends every stream at once. Default (when unset): 10s.
	ReloadDrain *caddy.Duration `json:"reload_drain,omitempty"`

	tokens      auth.TokenSource
	cors        corsPolicy
	heartbeat   time.Duration
	takeover    bool
	reloadDrain time.Duration
	auth        *auth.Client
	config      <-chan struct{} // this handler's config, told apart from the others: its context's Done
	ctx         caddy.Context   // its config's context, to find the http app when it stops
	gatewayKey  string          // its key in the gateways pool; never log it
	pooled      *pooledGateway  // nil until Provision succeeds on a valid config
	gateway     *gateway.Gateway
	attachment  *attachment
	stopping    bool       // the config is stopping (its "stopping" event, before Cleanup in the same goroutine)
	hubKey      string     // the key of the hubs the gateway reads, in their pool
	retryFrame  *sse.Frame // every stream's first frame
	retryAfter  string     // the retry delay in whole seconds, for Retry-After
	logger      *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.notify",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults and attaches the handler to its gateway: the one
// a handler of the running config with the same identity uses (a reload),
// or a new one on the pooled Redis hubs. It does not dial Redis: the hubs
// do that in the background, so Caddy starts while Redis is down.
//
// Caddy calls Provision before Validate. Provision therefore checks nothing
// itself: failing here would report the first mistake only, worded apart
// from Validate's. Instead, an invalid config builds nothing (no hub, no
// auth client, no goroutine) and Provision returns nil, so that Caddy goes
// on to Validate, which reports every mistake, and then to Cleanup, which
// copes with the missing state.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.applyDefaults()
	if h.Validate() != nil {
		return nil
	}
	rc, err := h.redisConfig()
	if err != nil {
		// Unreachable (Validate parsed the same URL). The error never
		// quotes the URL, which may hold a password.
		return fmt.Errorf("notify: redis: %w", err)
	}
	if err := registerCollectors(ctx.GetMetricsRegistry(), notifyMetrics.Collectors()...); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	events, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading events app: %w", err)
	}
	// Caddy waits for active requests before it exits, and its default
	// grace period is unlimited: when the process stops, streams must end
	// themselves, or it would hang.
	if err := events.(*caddyevents.App).On("stopping", stopOnEvent(h.configStopping)); err != nil {
		return fmt.Errorf("watching stopping event: %w", err)
	}
	// The modules of one config get contexts that differ (one per server)
	// but end together: the channel that says so names the config.
	h.config = ctx.Done()
	h.ctx = ctx
	h.setUp(rc)
	return nil
}

// setUp builds what serving needs, on a config Validate accepted: the
// request side (token sources, CORS, the auth client, the retry frame) and
// the gateway with this config's settings, taken from the pool (kept from
// the config a reload replaces) or built on the pooled hubs, presence
// keeper and control channel. Part of Provision, after what needs a Caddy
// context.
func (h *Handler) setUp(rc *redisurl.Config) {
	h.tokens = auth.TokenSource{Query: h.TokenQuery, Cookie: h.TokenCookie}
	h.cors = newCORSPolicy(h.CORS)
	authURL := resolvePlaceholders(h.AuthURL)
	h.auth = auth.New(auth.Options{URL: authURL, UserField: h.UserField, GroupsField: h.GroupsField,
		Timeout: time.Duration(h.AuthTimeout), CacheTTL: time.Duration(h.AuthCache),
		Concurrency: h.AuthConcurrency, Logger: h.logger, Metrics: notifyMetrics})
	h.retryFrame = sse.Retry(time.Duration(h.Retry))
	h.retryAfter = strconv.Itoa(int((time.Duration(h.Retry) + time.Second - 1) / time.Second))

	var history historySettings
	if h.Stream != "" {
		history = historySettings{h.HistoryEntries, h.HistoryBytes}
	}
	h.hubKey = hubKey(rc, &h.Source, history)
	var presenceKey, controlKey string
	if h.Presence != "" {
		presenceKey = fmt.Sprintf("%s %q %d", rc.Key(), h.Presence, h.PresenceInterval)
	}
	// Read with SSUBSCRIBE like the main channel; a stream-mode handler's
	// control channel is classic pub/sub.
	sharded := h.Sharded && h.Stream == ""
	if h.ControlChannel != "" {
		controlKey = fmt.Sprintf("%s %q %t", rc.Key(), h.ControlChannel, sharded)
	}
	fields := index.Key{Fields: message.Fields{Recipient: h.RecipientField, Group: h.GroupField, Event: h.EventField}}
	if h.Stream != "" {
		fields.DataField = h.StreamField
	}
	identity := h.identity(fields, authURL, presenceKey, controlKey)
	h.gatewayKey = fmt.Sprintf("%s #%d", identity, ordinals.next(h.config, identity))
	settings := h.settings()
	h.pooled = gateways.acquire(h.gatewayKey, func() *pooledGateway {
		// Pooled values outlive this config: they get the process logger.
		hubs := hubSets.acquire(h.hubKey, func() *pooledHubs {
			client, clientKey := acquireClient(rc, h.Stream, h.Partitions)
			src := hub.Source{Channel: h.Channel, Stream: h.Stream, Sharded: h.Sharded, Partitions: h.Partitions,
				History: hub.History{Entries: history.entries, Bytes: history.bytes}, MaxMessageSize: h.MaxMessageSize}
			opts := hub.Options{Logger: caddy.Log().Named("notify.hub"), Metrics: notifyMetrics}
			return &pooledHubs{set: hub.NewSet(client, src, opts), clientKey: clientKey}
		})
		p := &pooledGateway{hubKey: h.hubKey, presenceKey: presenceKey, controlKey: controlKey}
		var keeper *presence.Keeper
		if presenceKey != "" {
			keeper = presenceKeepers.acquire(presenceKey, func() *pooledPresence {
				client, clientKey := acquireClient(rc, "", 0)
				logger := caddy.Log().Named("notify.presence")
				return &pooledPresence{presence.New(client, h.Presence, time.Duration(h.PresenceInterval), logger, notifyMetrics), clientKey}
			}).keeper
		}
		p.gw = gateway.New(gateway.Options{Hubs: hubs.set, Fields: fields, Broadcast: h.Broadcast,
			Reauth: h.Reauth > 0, LocalGroups: h.Stream != "", Presence: keeper, Logger: caddy.Log().Named("notify"), Metrics: notifyMetrics,
			Settings: settings})
		if controlKey != "" {
			p.control = controlChannels.acquire(controlKey, func() *pooledControl {
				client, clientKey := acquireClient(rc, "", 0)
				logger := caddy.Log().Named("notify.control")
				return &pooledControl{control.New(client, h.ControlChannel, sharded, logger, notifyMetrics), clientKey}
			}).channel
			p.control.Add(p.gw)
		}
		return p
	})
	h.gateway = h.pooled.gw
	h.attachment = h.pooled.attach(h.config, settings)
}

// identity is the key of the handler's gateway in its pool: every setting
// that decides what its streams receive (the hubs they read, the fields,
// broadcast) or who their users are (the auth API and its user and groups fields,
// whether their credentials are kept for reauth), and what holds them (the
// control channel, presence). A reload that changes none of them keeps the
// handler's streams. It embeds credentials: never log it.
func (h *Handler) identity(fields index.Key, authURL, presenceKey, controlKey string) string {
	return fmt.Sprintf("%s|%q %q %q %q|%t|%q %q %q %t|%q|%q", h.hubKey, fields.DataField, fields.Recipient,
		fields.Group, fields.Event, h.Broadcast, authURL, h.UserField, h.GroupsField, h.Reauth > 0, controlKey, presenceKey)
}

// settings are the handler's settings that apply to the open streams of
// its gateway, those a reload keeps included.
func (h *Handler) settings() gateway.Settings {
	return gateway.Settings{
		Heartbeat: h.heartbeat, WriteTimeout: time.Duration(h.WriteTimeout),
		Queue:      index.QueueLimit{Events: h.QueueSize, Bytes: h.QueueBytes},
		MaxStreams: h.MaxStreams, MaxStreamsPerUser: h.MaxStreamsPerUser,
		ReplayLimit: h.ReplayLimit, Takeover: h.takeover,
		Auth: h.auth, Reauth: time.Duration(h.Reauth), Drain: h.reloadDrain,
	}
}

// configStopping is the handler's part in its config stopping: at a reload
// (another config is the running one), nothing, since Cleanup keeps or
// drains the streams; at a stop of the process, every stream ends, those
// draining after an earlier reload included: at once, or when the http
// app's shutdown_delay is over, during which its servers go on serving
// (so that a load balancer can take the instance out of its rotation
// while its streams still deliver).
func (h *Handler) configStopping() {
	h.stopping = true
	if active := caddy.ActiveContext(); active.Context != nil && active.Done() != h.config {
		return // a reload
	}
	end := func() {
		if h.gateway != nil {
			h.gateway.EndStreams()
		}
		draining.endAll()
	}
	var delay time.Duration
	if app, err := h.ctx.AppIfConfigured("http"); err == nil {
		if httpApp, ok := app.(*caddyhttp.App); ok {
			delay = time.Duration(httpApp.ShutdownDelay)
		}
	}
	if delay <= 0 {
		end()
		return
	}
	// The app sleeps through the delay, then shuts its servers down,
	// waiting for active requests: the streams end as it starts to.
	time.AfterFunc(delay, end)
}

func (h *Handler) applyDefaults() {
	h.Source.applyDefaults()
	if h.Stream != "" {
		if h.ReplayLimit == 0 {
			h.ReplayLimit = defaultReplayLimit
		}
		if h.HistoryEntries == 0 {
			h.HistoryEntries = defaultHistoryEntries
		}
		if h.HistoryBytes == 0 {
			h.HistoryBytes = defaultHistoryBytes
		}
	}
	if h.UserField == "" {
		h.UserField = defaultUserField
	}
	if h.GroupsField != "" && h.GroupField == "" {
		h.GroupField = defaultGroupField
	}
	if h.AuthTimeout == 0 {
		h.AuthTimeout = caddy.Duration(defaultAuthTimeout)
	}
	if h.AuthConcurrency == 0 {
		h.AuthConcurrency = defaultAuthConcurrency
	}
	h.heartbeat = defaultHeartbeat
	if h.Heartbeat != nil {
		h.heartbeat = time.Duration(*h.Heartbeat)
	}
	if h.Retry == 0 {
		h.Retry = caddy.Duration(defaultRetry)
	}
	if h.QueueSize == 0 {
		h.QueueSize = defaultQueueSize
	}
	if h.WriteTimeout == 0 {
		h.WriteTimeout = caddy.Duration(defaultWriteTimeout)
	}
	if h.Presence != "" && h.PresenceInterval == 0 {
		h.PresenceInterval = caddy.Duration(defaultPresenceInterval)
	}
	if h.QueueBytes == 0 {
		h.QueueBytes = max(defaultQueueBytes, h.MaxMessageSize)
	}
	h.takeover = h.Takeover == nil || *h.Takeover
	h.reloadDrain = defaultReloadDrain
	if h.ReloadDrain != nil {
		h.reloadDrain = time.Duration(*h.ReloadDrain)
	}
}

// Validate is the one rulebook of the configuration: the Caddyfile parser
// checks syntax, and leaves meaning to these rules, which it also runs on
// the block it read (to name its line); so a Caddyfile and a JSON config
// get the same message for the same mistake. It checks the config as it
// will run: with defaults applied (to a copy, as Validate must not modify
// h; Provision has normally applied them already) and global placeholders
// resolved. It reports every mistake, one per line, in the order of the
// struct's fields. Each line names the setting as it is written in the
// Caddyfile and in JSON, after "notify:" so that the lines below the first,
// which Caddy prints without its module path, still say where they are from.
func (h *Handler) Validate() error { return errors.Join(h.mistakes(false)...) }

// mistakes is Validate's list; atParse leaves out what depends on
// placeholders, unknown until the config is loaded.
func (h *Handler) mistakes(atParse bool) []error {
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

	c.Source.check(fail, atParse)
	// Defaults only fill the stream settings when Stream is set, so without
	// it any of them was set by the user and would be silently ignored.
	streamOnly := func(name string, set bool) {
		if set && c.Stream == "" {
			fail("%s applies to stream mode only: set stream, or remove %s", name, name)
		}
	}
	streamOnly("replay_limit", c.ReplayLimit != 0)
	if c.Stream != "" && c.ReplayLimit < 1 {
		fail("replay_limit must be a positive whole number")
	}
	streamOnly("history_entries", c.HistoryEntries != 0)
	if c.Stream != "" && c.HistoryEntries < 1 {
		fail("history_entries must be a positive whole number")
	}
	streamOnly("history_bytes", c.HistoryBytes != 0)
	// int64: on 32-bit platforms maxHistoryBytes does not fit an int.
	if c.Stream != "" && (c.HistoryBytes < 1 || int64(c.HistoryBytes) > maxHistoryBytes) {
		fail("history_bytes must be a size from 1 byte to 1 TiB")
	}
	if err := checkAuthURL(c.AuthURL, atParse); err != nil {
		fail("%v", err)
	}
	if c.GroupField != "" && c.GroupsField == "" {
		fail("group_field applies with groups_field only: streams have groups when the auth API names them; set groups_field, or remove group_field")
	}
	if c.EventField != "" && (c.EventField == c.RecipientField || c.EventField == c.GroupField) {
		fail("event_field must be a field of its own, not the recipient_field or group_field")
	}
	if c.GroupsField != "" && c.GroupsField == c.UserField {
		fail("groups_field and user_field must be different fields")
	}
	nonNegative("auth_timeout", c.AuthTimeout)
	nonNegative("auth_cache", c.AuthCache)
	if c.AuthConcurrency < 1 || c.AuthConcurrency > maxAuthConcurrency {
		fail("auth_concurrency must be a whole number from 1 to %d", maxAuthConcurrency)
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
	if c.QueueSize < 1 || c.QueueSize > maxQueueSize {
		fail("queue_size must be a whole number from 1 to %d", maxQueueSize)
	}
	nonNegative("write_timeout", c.WriteTimeout)
	if c.QueueBytes < c.MaxMessageSize {
		fail("queue_bytes must be at least max_message_size (%d bytes)", c.MaxMessageSize)
	}
	if c.ReloadDrain != nil {
		nonNegative("reload_drain", *c.ReloadDrain)
	}
	return errs
}

// Cleanup gives back this handler's use of its gateway. When a handler of
// the config that replaces this one uses the gateway too, its streams are
// kept (and counted); when none does, the gateway drains them. Caddy also
// calls Cleanup after a failed Provision, and for a new config that failed
// to load, so it tolerates nil state.
func (h *Handler) Cleanup() error {
	if h.auth != nil {
		h.auth.Close()
	}
	if h.pooled == nil {
		return nil
	}
	ordinals.forget(h.config)
	if kept := h.pooled.detach(h.attachment); kept && h.stopping {
		notifyMetrics.StreamsKept.Add(float64(h.gateway.Len()))
	}
	return gateways.release(h.gatewayKey)
}

// stopOnEvent adapts a func to caddyevents.Handler.
type stopOnEvent func()

// Handle calls f: the config is stopping.
func (f stopOnEvent) Handle(context.Context, caddy.Event) error {
	f()
	return nil
}

// checkAuthURL checks auth_url as written (raw) and once its global
// placeholders are resolved, naming the placeholder when it is the cause.
// atParse leaves a URL with placeholders for the load.
func checkAuthURL(raw string, atParse bool) error {
	if raw == "" {
		return errors.New("auth_url is required")
	}
	if atParse && hasPlaceholder(raw) {
		return nil
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

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
	_ caddyevents.Handler         = stopOnEvent(nil)
	_ control.Target              = (*gateway.Gateway)(nil)
)
