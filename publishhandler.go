package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/publish"
)

func init() {
	caddy.RegisterModule(PublishHandler{})
}

// defaultStreamMaxLen is the default of stream_maxlen: each XADD trims its
// stream to about this many entries.
const defaultStreamMaxLen = 100_000

// Defaults and bounds of max_body and body_timeout.
const (
	defaultMaxBody     = 64 << 20
	maxBodyLimit       = 1 << 30
	defaultBodyTimeout = 10 * time.Second
)

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
	// Where the messages go, and the rules they are checked by: shared
	// with notify, whose handlers with the same settings read them.
	Source

	// Stream mode: each XADD trims its stream with MAXLEN ~ this many
	// entries; 0 never trims. Default (when unset): 100000.
	StreamMaxLen *int `json:"stream_maxlen,omitempty"`

	// The largest request body, in bytes. A request that declares a
	// longer one (Content-Length) is answered 413 before any of its body
	// is read, with or without Expect: 100-continue (no 100 Continue is
	// sent); a body without a declared length is cut off with 413 at its
	// first byte past it. Over HTTP/1 the connection is then closed; over
	// HTTP/2 only the request's stream ends. It bounds what one request
	// may hold in memory: the messages are slices of the body, read once,
	// so a request holds about its body (at most about 1.2 times it with a
	// Content-Length, 1.5 times without) until they are published. A
	// bigger batch is better split into several requests: each holds
	// less, is published sooner, and costs less to send again after a
	// 503. A message must fit both this and max_message_size. Default:
	// 64MiB, at most 1GiB.
	MaxBody int `json:"max_body,omitempty"`

	// The longest a request's body may take to arrive, counted from the
	// end of its headers: a body not whole by then is answered 408 (over
	// HTTP/1 with Connection: close, and the connection is closed). So a
	// publisher that sends slowly, or stops halfway, holds a connection
	// and a goroutine for this long at most, where Caddy's read timeouts
	// restart at every byte. A body of max_body must arrive within it (64
	// MiB in 10s is 6.4 MB/s): raise it for publishers on slow links.
	// Default: 10s.
	BodyTimeout caddy.Duration `json:"body_timeout,omitempty"`

	run    *publishRun // nil until Provision succeeds on a valid config
	logger *zap.Logger
}

// publishRun is what a provisioned PublishHandler publishes with.
type publishRun struct {
	pub      *publish.Publisher
	poolKey  string       // the client's, for releaseClient
	limit    int          // the largest message: MaxMessageSize less the stream field's name
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
	rc, err := p.redisConfig()
	if err != nil {
		return fmt.Errorf("notify_publish: redis: %w", err) // unreachable: Validate parsed it
	}
	if err := registerCollectors(ctx.GetMetricsRegistry(), publishedTotal); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	client, key := acquireClient(rc, p.Stream, p.Partitions)
	run := &publishRun{poolKey: key, limit: p.MaxMessageSize}
	run.pub = p.publisher()
	run.pub.Client = client
	if p.Stream != "" {
		run.pub.MaxLen = int64(*p.StreamMaxLen)
		// The readers count an entry's field name in its size.
		run.limit = max(p.MaxMessageSize-len(p.StreamField), 0)
	}
	p.run = run // set only on success: Cleanup relies on it
	return nil
}

func (p *PublishHandler) applyDefaults() {
	p.Source.applyDefaults()
	if p.MaxBody == 0 {
		p.MaxBody = defaultMaxBody
	}
	if p.BodyTimeout == 0 {
		p.BodyTimeout = caddy.Duration(defaultBodyTimeout)
	}
	if p.Stream != "" && p.StreamMaxLen == nil {
		n := defaultStreamMaxLen
		p.StreamMaxLen = &n
	}
}

// Validate checks the config as it will run (defaults applied to a copy,
// placeholders resolved) and reports every mistake, one per line, in the
// order of the fields. A setting notify_publish shares with notify gets
// notify's message for the same mistake.
func (p *PublishHandler) Validate() error { return errors.Join(p.mistakes(false)...) }

// mistakes is Validate's list; atParse leaves out what depends on
// placeholders, unknown until the config is loaded.
func (p *PublishHandler) mistakes(atParse bool) []error {
	c := *p
	c.applyDefaults()
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("notify_publish: "+format, args...))
	}
	c.Source.check(fail, atParse)
	if c.StreamMaxLen != nil && c.Stream == "" {
		fail("stream_maxlen applies to stream mode only: set stream, or remove stream_maxlen")
	}
	if c.StreamMaxLen != nil && *c.StreamMaxLen < 0 {
		fail("stream_maxlen must not be negative")
	}
	if c.MaxBody < 1 || c.MaxBody > maxBodyLimit {
		fail("max_body must be a size from 1 byte to 1 GiB")
	}
	if c.BodyTimeout < 0 {
		fail("body_timeout must not be negative")
	}
	return errs
}

// Cleanup releases the Redis client. Caddy also calls it after a failed
// Provision.
func (p *PublishHandler) Cleanup() error {
	if p.run == nil {
		return nil
	}
	return clients.release(p.run.poolKey)
}

// ServeHTTP publishes the POSTed message, or array of messages, and
// answers 202 with what Redis said. It never calls next.
func (p *PublishHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	// A refusal before the body is read leaves it unread, unless there
	// is none.
	unread := r.ContentLength != 0
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		p.refuse(w, r, http.StatusMethodNotAllowed, "Method not allowed.", unread)
		return nil
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		p.refuse(w, r, http.StatusUnsupportedMediaType, "Content-Type must be application/json.", unread)
		return nil
	}
	if r.ContentLength > int64(p.MaxBody) {
		p.refuse(w, r, http.StatusRequestEntityTooLarge, errMsgTooLarge, unread)
		return nil
	}
	run := p.run
	rc := http.NewResponseController(w)
	p.setReadDeadline(rc, time.Now().Add(time.Duration(p.BodyTimeout)))
	b := newBodyReader(r.Body, run.limit, message.Fields{Recipient: p.RecipientField, Group: p.GroupField}, int64(p.MaxBody), r.ContentLength)
	msgs, berr := b.read()
	if berr != nil {
		p.refuse(w, r, berr.status, berr.msg, !b.done())
		return nil
	}
	// The body is whole: on HTTP/1, net/http now reads ahead to see the
	// client leave, and the deadline firing there would cancel the
	// connection's context, and so the next requests on it.
	p.setReadDeadline(rc, time.Time{})
	// Once sending starts, it finishes even if the client leaves: a
	// batch cut short would be published in part.
	results, err := run.pub.PublishBatch(context.WithoutCancel(r.Context()), msgs)
	if err != nil {
		p.warn(err)
		w.Header().Set("Retry-After", publishRetryAfter)
		p.refuse(w, r, http.StatusServiceUnavailable, "Redis is unavailable.", false)
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

// refuse answers with a JSON error and counts the refusal. unread says
// the request's body was not read to its end: an HTTP/1 connection is then
// closed after the answer, without reading the rest. net/http would
// otherwise read up to 256 KiB of it before answering (to keep the
// connection), and up to 256 KiB more after: a refusal of a body too
// large, or too slow, would wait for the very bytes it refuses. HTTP/2
// and HTTP/3 need nothing: the server ends the request's stream after
// the answer (RST_STREAM with NO_ERROR), and the connection goes on.
func (p *PublishHandler) refuse(w http.ResponseWriter, r *http.Request, status int, msg string, unread bool) {
	publishedTotal.WithLabelValues(strconv.Itoa(status)).Inc()
	if unread && r.ProtoMajor == 1 {
		p.closeUnread(w)
	}
	writeError(w, status, msg)
}

// closeUnread arranges for an HTTP/1 connection to close after the answer
// without reading what is left of the request's body, and to close
// gracefully: with a FIN, then a pause for the client to read the answer
// before the close resets a connection it is still sending on. It is
// called before the answer is written.
func (p *PublishHandler) closeUnread(w http.ResponseWriter) {
	// Connection: close spares the read before the answer.
	w.Header().Set("Connection", "close")
	// A read deadline already past makes the read after it fail at once
	// (Caddy's read_idle_timeout keeps a deadline set through the
	// response controller as the ceiling of its own).
	p.setReadDeadline(http.NewResponseController(w), longAgo)
	// net/http closes gracefully only after a MaxBytesReader on its own
	// ResponseWriter went past its limit: say so with a reader of one
	// byte, past a limit of none (the request's body is not touched).
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	_, _ = http.MaxBytesReader(w, io.NopCloser(strings.NewReader(" ")), 0).Read(make([]byte, 1))
}

// setReadDeadline sets the request's read deadline, through Caddy's
// read_idle_timeout when it is on, which keeps it as the ceiling of its
// own. Where that cannot be done (a ResponseWriter without the means, as
// some wrappers), body_timeout does not apply, and a refused body may be
// read before the connection closes.
func (p *PublishHandler) setReadDeadline(rc *http.ResponseController, t time.Time) {
	if err := rc.SetReadDeadline(t); err != nil {
		if c := p.logger.Check(zapcore.DebugLevel, "cannot set the read deadline of a publish"); c != nil {
			c.Write(zap.Error(err))
		}
	}
}

// longAgo is a deadline that has passed.
var longAgo = time.Unix(1, 0)

// warnEvery limits how often failed publishes are logged.
const warnEvery = 5 * time.Second

// warn logs a failed publish, at most once every warnEvery: during an
// outage every request fails the same way.
func (p *PublishHandler) warn(err error) {
	now := time.Now().UnixNano()
	last := p.run.lastWarn.Load()
	if now-last < int64(warnEvery) || !p.run.lastWarn.CompareAndSwap(last, now) {
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
)
