// Package gateway is the engine of one notify handler: its streams' place
// in the hubs' indexes (one per partition), the Set that writes them, the
// limits on how many may open, the heartbeat, the re-checks of their
// credentials (reauth), their users' presence, and the control channel's
// reach over them. The Caddy handler configures it with plain Options and
// hands it each authenticated request (Serve).
package gateway

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/auth"
	"github.com/caddy-notify/notify/internal/hub"
	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/presence"
	"github.com/caddy-notify/notify/internal/sse"
	"github.com/caddy-notify/notify/internal/stream"
	"github.com/caddy-notify/notify/internal/streamid"
	"github.com/caddy-notify/notify/publish"
)

// Options configure a Gateway.
type Options struct {
	// Hubs read the handler's source; the gateway attaches an index with
	// Fields to each of them.
	Hubs   *hub.Set
	Fields index.Key
	// Broadcast: the streams receive the messages addressed to "*".
	Broadcast bool
	// Heartbeat is the interval between heartbeats on an idle stream; 0:
	// none.
	Heartbeat time.Duration
	// WriteTimeout bounds each write to a client.
	WriteTimeout time.Duration
	// Queue bounds what may wait for one stream.
	Queue index.QueueLimit
	// MaxStreams and MaxStreamsPerUser bound the open streams; 0: no
	// bound.
	MaxStreams, MaxStreamsPerUser int
	// ReplayLimit is the most events a resuming stream is replayed.
	ReplayLimit int
	// Takeover takes HTTP/1.x streams off the request goroutine.
	Takeover bool
	// Auth is the auth API's client, for reauth.
	Auth *auth.Client
	// Reauth is how often open streams' credentials are checked again; 0:
	// never.
	Reauth time.Duration
	// Presence, when set, keeps the users of open streams online.
	Presence *presence.Keeper
	Logger   *zap.Logger
	Metrics  *metrics.Set
}

// Gateway is the engine of one notify handler.
type Gateway struct {
	hubs        *hub.Set
	indexes     []*index.Index // by partition
	owner       *index.Owner
	broadcast   bool
	replayLimit int
	streams     *stream.Set
	limits      *limits
	reauth      *reauther // nil when reauth is off
	presence    *presence.Keeper
	auth        atomic.Pointer[auth.Client]
	logger      *zap.Logger
	m           *metrics.Set
	cancel      context.CancelFunc // stops the heartbeat and reauth loops
}

// New attaches a gateway to its hubs and starts its heartbeat and reauth
// loops.
func New(opts Options) *Gateway {
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		hubs:        opts.Hubs,
		owner:       index.NewOwner(opts.Queue),
		broadcast:   opts.Broadcast,
		replayLimit: opts.ReplayLimit,
		limits:      newLimits(opts.MaxStreams, opts.MaxStreamsPerUser),
		presence:    opts.Presence,
		logger:      opts.Logger,
		m:           opts.Metrics,
		cancel:      cancel,
	}
	g.auth.Store(opts.Auth)
	g.streams = stream.NewSet(stream.Options{Logger: opts.Logger, Metrics: opts.Metrics,
		WriteTimeout: opts.WriteTimeout, Takeover: opts.Takeover, OnEnd: g.ended})
	g.indexes = opts.Hubs.Attach(opts.Fields)
	if opts.Heartbeat > 0 {
		go g.beat(ctx, opts.Heartbeat)
	}
	if opts.Reauth > 0 {
		g.reauth = newReauther(opts.Reauth, g.auth.Load, opts.Logger, opts.Metrics)
		go g.reauth.run(ctx)
	}
	return g
}

// EndStreams ends every stream at once, and refuses new ones: the handler
// is stopping. It may be called more than once.
func (g *Gateway) EndStreams() {
	g.cancel()
	g.streams.Stop()
}

// Close ends every stream and detaches the gateway from its hubs, once.
func (g *Gateway) Close() {
	g.EndStreams()
	g.hubs.Detach(g.indexes)
}

// Reserve takes a place for a new stream before it is authenticated: false
// means max_streams is reached. Every true is matched by Unreserve, or
// handed to Serve.
func (g *Gateway) Reserve() bool { return g.limits.reserve() }

// Unreserve gives back a place Reserve took.
func (g *Gateway) Unreserve() { g.limits.unreserve() }

// ReserveUser takes a place among user's streams: false means
// max_streams_per_user is reached. Every true is matched by Release, or
// handed to Serve.
func (g *Gateway) ReserveUser(user string) bool { return g.limits.reserveUser(user) }

// Release gives back both places of a request that gets no stream.
func (g *Gateway) Release(user string) {
	g.limits.releaseUser(user)
	g.limits.unreserve()
}

// WaitUp waits up to d for the source to be read (any partition of it),
// and reports whether it is.
func (g *Gateway) WaitUp(ctx context.Context, d time.Duration) bool { return g.hubs.WaitUp(ctx, d) }

// WaitUserUp waits up to d for the partition of user to be read, and
// reports whether it is.
func (g *Gateway) WaitUserUp(ctx context.Context, user string, d time.Duration) bool {
	_, hb := g.hubs.Partition(user)
	return hb.WaitUp(ctx, d)
}

// Stream is an authenticated request for a stream.
type Stream struct {
	User   string
	Client string // the client's address, for the auth API's slots
	Creds  auth.Credentials
	From   *streamid.ID // stream mode: resume after this ID; nil: from now on
	Retry  *sse.Frame   // the stream's first frame
}

// Serve answers an authenticated request with its stream, on the places
// Reserve and ReserveUser took, which the stream gives back when it ends.
// The subscriber is registered before the first byte, so that nothing
// published after the client sees the 200 can be missed. Over HTTP/1.x
// with takeover, Serve returns at once; otherwise when the stream ends. It
// returns an error, having written nothing and given the places back, when
// the stream could not be registered: the client left (ctx.Err()), or a
// resume could not read Redis.
func (g *Gateway) Serve(w http.ResponseWriter, r *http.Request, req Stream) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // an nginx in front must not buffer
	part, hb := g.hubs.Partition(req.User)
	ix := g.indexes[part]
	sub := index.NewSubscriber(req.User, g.broadcast, g.owner)
	var cred *credGroup
	if g.reauth != nil {
		cred = g.reauth.join(sub, req.Client, req.Creds)
	}
	if g.presence != nil {
		g.presence.Join(req.User)
	}
	st := g.streams.NewStream(sub, ix, cred)
	pre, err := hb.Register(r.Context(), ix, sub, req.From, g.replayLimit)
	if err != nil {
		g.release(sub, cred)
		return err
	}
	if req.From != nil {
		pre.Record(g.logger, g.m)
	}
	g.m.StreamsOpened.WithLabelValues("ok").Inc()
	g.streams.Serve(st, w, r, pre.Frames(req.Retry), pre.Written())
	return nil
}

// ended gives back what a stream held; the stream Set calls it.
func (g *Gateway) ended(st *stream.Stream, tag any) {
	cred, _ := tag.(*credGroup)
	g.release(st.Subscriber(), cred)
}

// release gives back what an authenticated stream held: its places in
// the limits, reauth and presence.
func (g *Gateway) release(sub *index.Subscriber, cred *credGroup) {
	if cred != nil {
		g.reauth.leave(cred, sub)
	}
	if g.presence != nil {
		g.presence.Leave(sub.User())
	}
	g.Release(sub.User())
}

// Disconnect ends the gateway's streams of users, or all of them, with a
// revoked event, and returns how many it ended: the control channel's
// Target. A user's streams are in its partition's index.
func (g *Gateway) Disconnect(users []string, all bool) int {
	n := 0
	frame := sse.Revoked(sse.RevokedDisconnected)
	revoke := func(s *index.Subscriber) {
		if s.Owner() == g.owner && s.Revoke(frame) {
			n++
		}
	}
	if all {
		for _, ix := range g.indexes {
			for i := range index.NumShards {
				ix.EachInShard(i, revoke)
			}
		}
		return n
	}
	for _, u := range users {
		g.indexes[publish.Partition(u, len(g.indexes))].EachOfUser(u, revoke)
	}
	return n
}
