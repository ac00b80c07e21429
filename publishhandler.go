package notify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-notify/notify/publish"
)

func init() {
	caddy.RegisterModule(PublishHandler{})
}

// DefaultStreamMaxLen is the default of stream_maxlen: each XADD trims its
// stream to about this many entries.
const DefaultStreamMaxLen = 100_000

// publishRetryAfter is the Retry-After of a 503: Redis could not take a
// publish, and a connection error often heals at the next attempt.
const publishRetryAfter = "1"

// PublishHandler publishes the JSON messages POSTed to it where notify
// handlers with the same settings read them: on the channel or stream (and
// partitions) of its configuration, after checking each message with the
// rules the readers deliver by. It has no authentication of its own: put
// basic_auth, forward_auth or a remote_ip matcher in front of it. It ends
// the middleware chain.
type PublishHandler struct {
	// Redis, as a URL, as notify's redis: one server, Sentinel or Cluster.
	// Global placeholders such as {env.REDIS_URL} are resolved at
	// provision time. Default: redis://127.0.0.1:6379/0.
	Redis string `json:"redis,omitempty"`

	// Pub/sub channel to publish to. Default: notifications (unless
	// Stream is set).
	Channel string `json:"channel,omitempty"`

	// Pub/sub mode: publish with SPUBLISH, for notify handlers with
	// sharded on.
	Sharded bool `json:"sharded,omitempty"`

	// With n > 1, publish each message once on the partition of each of
	// its recipients (<channel>.<i> or <stream>.<i>, i = crc32(user id)
	// mod n), a broadcast on every partition, as notify handlers with the
	// same partitions read them. Default: 1, at most 1024.
	Partitions int `json:"partitions,omitempty"`

	// Redis Stream to add messages to (XADD) instead of a pub/sub channel.
	// Channel and Stream are alternatives.
	Stream string `json:"stream,omitempty"`

	// Stream mode: the entry field holding the message JSON. Default: data.
	StreamField string `json:"stream_field,omitempty"`

	// Stream mode: each XADD trims its stream with MAXLEN ~ this many
	// entries; 0 never trims. Default (when unset): 100000.
	StreamMaxLen *int `json:"stream_maxlen,omitempty"`

	// JSON field of each message that names its recipients. Default:
	// recipient_id.
	RecipientField string `json:"recipient_field,omitempty"`

	// The largest message (pub/sub) or stream entry (its field name
	// included) a notify handler with the same setting delivers, in
	// bytes: a bigger message gets 413. A JSON array may hold up to 1000
	// messages of this size each. Default: 1 MiB, at most 512 MiB.
	MaxMessageSize int `json:"max_message_size,omitempty"`

	run    *publishRun // nil until Provision succeeds on a valid config
	logger *zap.Logger
}

// publishRun is what a provisioned PublishHandler publishes with.
type publishRun struct {
	pub      *publish.Publisher
	poolKey  string // the client's, for releaseClient
	limit    int    // the largest message: MaxMessageSize less the stream field's name
	readers  sync.Pool
	lastWarn atomic.Int64 // unix nanoseconds of the last failure logged
}

// CaddyModule returns the Caddy module information.
func (PublishHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.notify_publish",
		New: func() caddy.Module { return new(PublishHandler) },
	}
}

// Provision sets defaults and takes the Redis client for these settings
// from the process's pool, shared with notify handlers and kept across
// reloads. It does not dial Redis. As notify's Provision, it builds
// nothing for an invalid config and leaves the report to Validate.
func (p *PublishHandler) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	p.applyDefaults()
	if p.Validate() != nil {
		return nil
	}
	rc, err := redisOptions(resolvePlaceholders(p.Redis))
	if err != nil {
		return fmt.Errorf("notify_publish: redis: %w", err) // unreachable: Validate parsed it
	}
	if err := registerPublishMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	client, key := acquireClient(rc, p.Stream, p.Partitions)
	run := &publishRun{poolKey: key, limit: p.MaxMessageSize}
	run.pub = &publish.Publisher{Client: client, Channel: p.Channel, Stream: p.Stream, StreamField: p.StreamField,
		Partitions: p.Partitions, Sharded: p.Sharded}
	if p.Stream != "" {
		run.pub.MaxLen = int64(*p.StreamMaxLen)
		// The readers count an entry's field name in its size.
		run.limit = max(p.MaxMessageSize-len(p.StreamField), 0)
	}
	run.readers.New = func() any { return bufio.NewReaderSize(nil, 16<<10) }
	p.run = run // set only on success: Cleanup relies on it
	return nil
}

func (p *PublishHandler) applyDefaults() {
	if p.Redis == "" {
		p.Redis = DefaultRedis
	}
	if p.Channel == "" && p.Stream == "" {
		p.Channel = DefaultChannel
	}
	if p.Stream != "" {
		if p.StreamField == "" {
			p.StreamField = DefaultStreamField
		}
		if p.StreamMaxLen == nil {
			n := DefaultStreamMaxLen
			p.StreamMaxLen = &n
		}
	}
	if p.Partitions == 0 {
		p.Partitions = 1
	}
	if p.RecipientField == "" {
		p.RecipientField = DefaultRecipientField
	}
	if p.MaxMessageSize == 0 {
		p.MaxMessageSize = DefaultMaxMessageSize
	}
}

// Validate checks the config as it will run (defaults applied to a copy,
// placeholders resolved) and reports every mistake, one per line, in the
// order of the fields. A setting notify_publish shares with notify gets
// notify's message for the same mistake (TestPublishValidateMatchesNotify).
func (p *PublishHandler) Validate() error {
	c := *p
	c.applyDefaults()
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("notify_publish: "+format, args...))
	}
	checkSource(fail, c.Redis, c.Channel, c.Stream, c.Sharded, c.Partitions)
	for _, s := range []struct {
		name string
		set  bool
	}{{"stream_field", c.StreamField != ""}, {"stream_maxlen", c.StreamMaxLen != nil}} {
		if s.set && c.Stream == "" {
			fail("%s applies to stream mode only: set stream, or remove %s", s.name, s.name)
		}
	}
	if c.StreamMaxLen != nil && *c.StreamMaxLen < 0 {
		fail("stream_maxlen must not be negative")
	}
	if c.MaxMessageSize < 1 || c.MaxMessageSize > MaxMessageSizeLimit {
		fail("max_message_size must be a size from 1 byte to 512 MiB")
	}
	return errors.Join(errs...)
}

// Cleanup releases the Redis client. Caddy also calls it after a failed
// Provision.
func (p *PublishHandler) Cleanup() error {
	if p.run == nil {
		return nil
	}
	return releaseClient(p.run.poolKey)
}

// ServeHTTP publishes the POSTed message, or array of messages, and
// answers 202 with what Redis said. It never calls next.
func (p *PublishHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		p.refuse(w, http.StatusMethodNotAllowed, "Method not allowed.")
		return nil
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		p.refuse(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json.")
		return nil
	}
	// The most a body may hold: MaxPublishBatch messages of limit bytes.
	// Each message is bounded as it is read (bodyReader).
	run := p.run
	bodyLimit := int64(MaxPublishBatch) * int64(max(run.limit, 1))
	if r.ContentLength > bodyLimit {
		p.refuse(w, http.StatusRequestEntityTooLarge, errMsgTooLarge)
		return nil
	}
	br := run.readers.Get().(*bufio.Reader)
	br.Reset(http.MaxBytesReader(w, r.Body, bodyLimit))
	msgs, berr := (&bodyReader{br: br, limit: run.limit, field: p.RecipientField}).read(r.ContentLength)
	br.Reset(nil)
	run.readers.Put(br)
	if berr != nil {
		p.refuse(w, berr.status, berr.msg)
		return nil
	}
	// Once sending starts, it finishes even if the client leaves: a
	// batch cut short would be published in part.
	results, err := run.pub.PublishBatch(context.WithoutCancel(r.Context()), msgs)
	if err != nil {
		p.warn(err)
		w.Header().Set("Retry-After", publishRetryAfter)
		p.refuse(w, http.StatusServiceUnavailable, "Redis is unavailable.")
		return nil
	}
	publishedOK.Inc()
	writeJSON(w, http.StatusAccepted, p.answer(results))
	return nil
}

// answer is the 202's body: the entry IDs (stream mode), or the receivers
// PUBLISH counted (pub/sub).
func (p *PublishHandler) answer(results []publish.Result) any {
	if p.Stream != "" {
		ids := []string{}
		for _, res := range results {
			for _, t := range res.Targets {
				ids = append(ids, t.ID)
			}
		}
		return struct {
			IDs []string `json:"ids"`
		}{ids}
	}
	var receivers int64
	for _, res := range results {
		for _, t := range res.Targets {
			receivers += t.Receivers
		}
	}
	return struct {
		Receivers int64 `json:"receivers"`
	}{receivers}
}

// isJSON reports whether a Content-Type is application/json, with no
// charset or UTF-8 (the only one JSON allows).
func isJSON(contentType string) bool {
	if contentType == "application/json" {
		return true // the usual case, without parsing
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// refuse answers with a JSON error and counts the refusal.
func (p *PublishHandler) refuse(w http.ResponseWriter, status int, msg string) {
	publishedTotal.WithLabelValues(strconv.Itoa(status)).Inc()
	writeError(w, status, msg)
}

// warn logs a failed publish, at most once every dropLogEvery: during an
// outage every request fails the same way.
func (p *PublishHandler) warn(err error) {
	now := time.Now().UnixNano()
	last := p.run.lastWarn.Load()
	if now-last < int64(dropLogEvery) || !p.run.lastWarn.CompareAndSwap(last, now) {
		return
	}
	p.logger.Warn("publishing to redis failed; answering 503", zap.Error(err))
}

// Interface guards
var (
	_ caddy.Provisioner           = (*PublishHandler)(nil)
	_ caddy.Validator             = (*PublishHandler)(nil)
	_ caddy.CleanerUpper          = (*PublishHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*PublishHandler)(nil)
	_ caddyfile.Unmarshaler       = (*PublishHandler)(nil)
	_ caddy.Destructor            = pooledClient{}
)
