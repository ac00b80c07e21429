package gateway

import (
	"context"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/auth"
	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/sse"
)

// reauthBuckets is how many ticks one reauth interval is cut into: the
// credentials to check again are spread over them at random, so checks are
// never all sent at once.
const reauthBuckets = 64

// reauther checks again, about every interval, the credentials the open
// streams of one handler were opened with (reauth). Streams opened with the
// same token, cookies and user share one check: 1,000 streams of 10 users
// cost about 10 auth calls per interval, not 1,000.
type reauther struct {
	auth    func() *auth.Client // the handler's client, as the newest config built it
	regroup func(subs []*index.Subscriber, old, now []string)
	logger  *zap.Logger
	m       *metrics.Set

	mu      sync.Mutex
	groups  map[credGroupKey]*credGroup
	buckets [reauthBuckets][]*credGroup
}

type credGroupKey struct {
	creds auth.Key
	user  string
}

// credGroup is the streams opened with one set of credentials.
type credGroup struct {
	key      credGroupKey
	client   string // the address the first stream came from (see auth.Client.UserID)
	creds    auth.Credentials
	bucket   int
	subs     []*index.Subscriber // guarded by reauther.mu
	checking bool                // guarded by reauther.mu
	groups   []string            // the user's groups at the last check; guarded by reauther.mu
}

func newReauther(client func() *auth.Client, regroup func([]*index.Subscriber, []string, []string), logger *zap.Logger, m *metrics.Set) *reauther {
	return &reauther{auth: client, regroup: regroup, logger: logger, m: m, groups: make(map[credGroupKey]*credGroup)}
}

// join adds a stream opened with these credentials; leave removes it.
func (ra *reauther) join(s *index.Subscriber, client string, creds auth.Credentials, groups []string) *credGroup {
	key := credGroupKey{creds.Key(), s.User()}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	g := ra.groups[key]
	if g == nil {
		g = &credGroup{key: key, client: client, creds: creds, bucket: rand.N(reauthBuckets), groups: groups}
		ra.groups[key] = g
		ra.buckets[g.bucket] = append(ra.buckets[g.bucket], g)
	}
	g.subs = append(g.subs, s)
	return g
}

func (ra *reauther) leave(g *credGroup, s *index.Subscriber) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if i := slices.Index(g.subs, s); i >= 0 {
		g.subs = slices.Delete(g.subs, i, i+1)
	}
	if len(g.subs) > 0 {
		return
	}
	delete(ra.groups, g.key)
	b := ra.buckets[g.bucket]
	if i := slices.Index(b, g); i >= 0 {
		ra.buckets[g.bucket] = slices.Delete(b, i, i+1)
	}
}

// run checks one bucket of credentials per tick, every bucket once per
// interval, until ctx ends.
func (ra *reauther) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(max(interval/reauthBuckets, time.Millisecond))
	defer t.Stop()
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ra.mu.Lock()
		var due []*credGroup
		for _, g := range ra.buckets[tick%reauthBuckets] {
			if !g.checking { // a check still running when its turn comes again is not doubled
				g.checking = true
				due = append(due, g)
			}
		}
		ra.mu.Unlock()
		for _, g := range due {
			go ra.check(ctx, g)
		}
	}
}

// check asks the auth API again, through the same path as a new stream (one
// call for concurrent identical checks, auth_cache, auth_concurrency). A
// refusal or another user ends the group's streams with a revoked event; an
// outage of the auth API ends none.
func (ra *reauther) check(ctx context.Context, g *credGroup) {
	id, aerr := ra.auth().Check(ctx, g.client, g.creds)
	ra.mu.Lock()
	g.checking = false
	subs := slices.Clone(g.subs)
	old := g.groups
	regroup := aerr == nil && id.User == g.key.user && !slices.Equal(old, id.Groups)
	if regroup {
		g.groups = id.Groups
	}
	ra.mu.Unlock()
	if ctx.Err() != nil {
		return // the loop was stopped: the gateway is ending or restarting it
	}
	if regroup {
		// A membership change alone ends no stream: delivery follows.
		ra.regroup(subs, old, id.Groups)
	}
	result, reason := "ok", ""
	switch {
	case aerr == nil && id.User == g.key.user:
	case aerr == nil:
		result, reason = "denied", sse.RevokedUserChanged
	case aerr.Status == http.StatusUnauthorized:
		result, reason = "denied", sse.RevokedUnauthorized
	case aerr.Status == http.StatusForbidden:
		result, reason = "denied", sse.RevokedForbidden
	case aerr.Status == http.StatusGatewayTimeout:
		result = "timeout"
	default:
		result = "error"
	}
	ra.m.ReauthChecks.WithLabelValues(result).Inc()
	if reason == "" {
		return
	}
	n := 0
	for _, s := range subs {
		if s.Revoke(sse.Revoked(reason)) {
			n++
		}
	}
	ra.m.Revoked.WithLabelValues(reason).Add(float64(n))
	if c := ra.logger.Check(zap.InfoLevel, "streams revoked"); c != nil {
		c.Write(zap.String("reason", reason), zap.Int("streams", n))
	}
}
