// Package gateway is the engine of one notify handler: its streams' place
// in the hubs' indexes (one per partition), the Set that writes them, the
// limits on how many may open, the heartbeat, the re-checks of their
// credentials (reauth), their users' presence, and the control channel's
// reach over them. The Caddy handler configures it with plain Options and
// hands it each authenticated request (Serve).
//
// A gateway outlives the config that built it when the next config has a
// handler with the same identity (what its streams receive and who their
// users are): the streams stay open, and the next config's Settings apply
// to them (Apply). A gateway no config wants any more ends its streams,
// cleanly and spread out (Drain), or at once when the process stops
// (EndStreams).
package gateway

import (
	"context"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
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

// Options are a gateway's identity: what its streams receive and who their
// users are. They do not change while it lives.
type Options struct {
	// Hubs read the handler's source; the gateway attaches an index with
	// Fields to each of them.
	Hubs   *hub.Set
	Fields index.Key
	// Broadcast: the streams receive the messages addressed to "*".
	Broadcast bool
	// Reauth: the streams' credentials are kept, to be checked again
	// every Settings.Reauth.
	Reauth bool
	// LocalGroups: every hub delivers the messages of every group (stream
	// mode, where a group's messages are on every partition), so a
	// stream's groups are indexed beside its user. Otherwise (pub/sub) a
	// group's messages are on the group's partition, whose index holds
	// its members.
	LocalGroups bool
	// Presence, when set, keeps the users of open streams online.
	Presence *presence.Keeper
	Logger   *zap.Logger
	Metrics  *metrics.Set
	// Settings are the first config's.
	Settings Settings
}

// Settings are how a gateway serves its streams; a reload may change them,
// and they then apply to the streams already open.
type Settings struct {
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
	// Reauth is how often open streams' credentials are checked again,
	// with Options.Reauth.
	Reauth time.Duration
	// Drain is how long Drain spreads the ends of the streams over.
	Drain time.Duration
}

// Gateway is the engine of one notify handler.
type Gateway struct {
	hubs        *hub.Set
	indexes     []*index.Index // by partition
	owner       *index.Owner
	broadcast   bool
	localGroups bool
	streams     *stream.Set
	limits      *limits
	reauth      *reauther // nil when reauth is off
	presence    *presence.Keeper
	logger      *zap.Logger
	m           *metrics.Set

	auth        atomic.Pointer[auth.Client]
	replayLimit atomic.Int64

	mu        sync.Mutex // guards what follows
	settings  Settings
	heartbeat context.CancelFunc // stops the heartbeat loop, nil when none
	reauthRun context.CancelFunc // stops the reauth loop, nil when none
	ending    bool               // EndStreams or Drain was called
}

// New attaches a gateway to its hubs and starts its loops.
func New(opts Options) *Gateway {
	g := &Gateway{
		hubs:        opts.Hubs,
		owner:       index.NewOwner(opts.Settings.Queue),
		broadcast:   opts.Broadcast,
		localGroups: opts.LocalGroups || opts.Hubs.Partitions() == 1,
		limits:      newLimits(opts.Settings.MaxStreams, opts.Settings.MaxStreamsPerUser),
		presence:    opts.Presence,
		logger:      opts.Logger,
		m:           opts.Metrics,
	}
	g.streams = stream.NewSet(stream.Options{Logger: opts.Logger, Metrics: opts.Metrics,
		WriteTimeout: opts.Settings.WriteTimeout, Takeover: opts.Settings.Takeover, OnEnd: g.ended})
	if opts.Reauth {
		g.reauth = newReauther(g.auth.Load, g.regroup, opts.Logger, opts.Metrics)
	}
	g.indexes = opts.Hubs.Attach(opts.Fields)
	g.Apply(opts.Settings)
	return g
}

// Apply makes s the gateway's settings, for its open streams as for new
// ones; a loop whose interval changed starts again.
func (g *Gateway) Apply(s Settings) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ending {
		return
	}
	old := g.settings
	g.settings = s
	g.auth.Store(s.Auth)
	g.replayLimit.Store(int64(s.ReplayLimit))
	g.owner.SetLimit(s.Queue)
	g.limits.set(s.MaxStreams, s.MaxStreamsPerUser)
	g.streams.SetWriteTimeout(s.WriteTimeout)
	g.streams.SetTakeover(s.Takeover)
	if s.Heartbeat != old.Heartbeat || g.heartbeat == nil {
		if g.heartbeat != nil {
			g.heartbeat()
			g.heartbeat = nil
		}
		if s.Heartbeat > 0 {
			ctx, cancel := context.WithCancel(context.Background())
			g.heartbeat = cancel
			go g.beat(ctx, s.Heartbeat)
		}
	}
	if g.reauth != nil && (s.Reauth != old.Reauth || g.reauthRun == nil) {
		if g.reauthRun != nil {
			g.reauthRun()
			g.reauthRun = nil
		}
		if s.Reauth > 0 {
			ctx, cancel := context.WithCancel(context.Background())
			g.reauthRun = cancel
			go g.reauth.run(ctx, s.Reauth)
		}
	}
}

// stopLoops stops the heartbeat and reauth loops, and makes Apply a no-op:
// the gateway is ending. It reports false when it was already ending.
func (g *Gateway) stopLoops() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ending {
		return false
	}
	g.ending = true
	for _, cancel := range []context.CancelFunc{g.heartbeat, g.reauthRun} {
		if cancel != nil {
			cancel()
		}
	}
	return true
}

// Len is how many streams are open.
func (g *Gateway) Len() int { return g.streams.Len() }

// EndStreams ends every stream at once, and refuses new ones: the process
// is stopping. It may be called more than once, and after Drain, whose
// spread it cuts short.
func (g *Gateway) EndStreams() {
	g.stopLoops()
	g.streams.Stop()
}

// drainGrace is how long after its window a drain cuts off the streams it
// could not end cleanly (a client that stopped reading).
const drainGrace = time.Second

// Drain ends the gateway's streams, each cleanly once what waits for it is
// written (the body's end for HTTP/1.1, END_STREAM for HTTP/2 and HTTP/3,
// never a reset), their ends spread evenly over the Drain setting in a
// random order (0: at once), and refuses new ones. A stream still open a
// second after the window is cut off. It returns at once, with a channel
// closed when the last stream has ended, and how many streams it drains.
func (g *Gateway) Drain() (ended <-chan struct{}, streams int) {
	g.mu.Lock()
	over := g.settings.Drain
	g.mu.Unlock()
	g.stopLoops()
	open := g.streams.Close()
	rand.Shuffle(len(open), func(i, j int) { open[i], open[j] = open[j], open[i] })
	go func() {
		start := time.Now()
		cutoff := time.NewTimer(over + drainGrace)
		defer cutoff.Stop()
		for i, st := range open {
			// Stream i of n ends at i/n of the window.
			at := time.Duration(float64(over) * float64(i) / float64(len(open)))
			if wait := time.Until(start.Add(at)); wait > 0 {
				select {
				case <-time.After(wait):
				case <-g.streams.Emptied():
					return
				}
			}
			g.streams.Finish(st)
		}
		select {
		case <-g.streams.Emptied():
		case <-cutoff.C:
			g.streams.Stop()
		}
	}()
	return g.streams.Emptied(), len(open)
}

// Close detaches the gateway from its hubs, once its streams have ended
// (EndStreams, or Drain's channel closed).
func (g *Gateway) Close() {
	g.stopLoops()
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
	Groups []string // the user's groups, sorted
	Client string   // the client's address, for the auth API's slots
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
	sub.SetGroups(req.Groups)
	var cred *credGroup
	if g.reauth != nil {
		cred = g.reauth.join(sub, req.Client, req.Creds, req.Groups)
	}
	if g.presence != nil {
		g.presence.Join(req.User)
	}
	st := g.streams.NewStream(sub, ix, cred)
	// Groups indexed elsewhere (pub/sub partitions) are joined first:
	// pub/sub has no history, so the stream only needs to be in them
	// before its response starts. Those indexed beside the user join with
	// it, at the moment its history and live events meet.
	local := req.Groups
	if !g.localGroups {
		g.joinRemote(sub, req.Groups)
		local = nil
	}
	pre, err := hb.Register(r.Context(), ix, sub, local, req.From, int(g.replayLimit.Load()))
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
// the limits, reauth, presence and its groups.
func (g *Gateway) release(sub *index.Subscriber, cred *credGroup) {
	if cred != nil {
		g.reauth.leave(cred, sub)
	}
	g.leaveGroups(sub, sub.Groups())
	if g.presence != nil {
		g.presence.Leave(sub.User())
	}
	g.Release(sub.User())
}

// Disconnect ends the gateway's streams of users, of members of groups,
// or all of them, with a revoked event, and returns how many it ended: the
// control channel's Target. A user's streams are in its partition's index;
// a group's members, in their users' indexes or the group's.
func (g *Gateway) Disconnect(users, groups []string, all bool) int {
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
	for _, grp := range groups {
		for _, ix := range g.groupIndexes(grp) {
			ix.EachOfGroup(grp, revoke)
		}
	}
	return n
}

// groupIndexes are the indexes that may hold members of group: the
// group's partition's, or, with local groups, every partition's.
func (g *Gateway) groupIndexes(group string) []*index.Index {
	if g.localGroups {
		return g.indexes
	}
	return g.indexes[publish.Partition(group, len(g.indexes)) : publish.Partition(group, len(g.indexes))+1]
}

// homeOf is the index holding sub's membership of group.
func (g *Gateway) homeOf(sub *index.Subscriber, group string) *index.Index {
	n := len(g.indexes)
	if g.localGroups {
		return g.indexes[publish.Partition(sub.User(), n)]
	}
	return g.indexes[publish.Partition(group, n)]
}

// joinRemote adds sub to groups in their partitions' indexes.
func (g *Gateway) joinRemote(sub *index.Subscriber, groups []string) {
	for _, grp := range groups {
		g.homeOf(sub, grp).AddGroups(sub, []string{grp})
	}
}

// leaveGroups takes sub out of groups, wherever they are indexed.
func (g *Gateway) leaveGroups(sub *index.Subscriber, groups []string) {
	for _, grp := range groups {
		g.homeOf(sub, grp).RemoveGroups(sub, []string{grp})
	}
}

// regroup moves subs, the streams of one set of credentials, from the
// groups old to the groups now (both sorted): reauth found the user's
// groups changed. Delivery follows from the next message on.
func (g *Gateway) regroup(subs []*index.Subscriber, old, now []string) {
	var left, joined []string
	for _, grp := range old {
		if _, in := slices.BinarySearch(now, grp); !in {
			left = append(left, grp)
		}
	}
	for _, grp := range now {
		if _, in := slices.BinarySearch(old, grp); !in {
			joined = append(joined, grp)
		}
	}
	for _, sub := range subs {
		sub.SetGroups(now)
		for _, grp := range joined {
			g.homeOf(sub, grp).AddGroups(sub, []string{grp})
		}
		g.leaveGroups(sub, left)
		if sub.IsClosed() {
			// It ended meanwhile, and may have left its groups before
			// it joined these: leave them again.
			g.leaveGroups(sub, now)
		}
	}
}
