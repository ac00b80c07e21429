// Package presence keeps, in a Redis sorted set, which users have an open
// stream on any instance (presence): a Keeper per process refreshes its own
// users in batches.
package presence

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/metrics"
)

const (
	// lifetimes is how many refresh intervals a member counts as
	// online after its last refresh: a user is offline at most that long
	// after its last stream closed, or its instance died.
	lifetimes = 3
	// batchSize is how many members one ZADD carries.
	batchSize = 1000
	// flushEvery bounds how long a user's first stream waits to be seen
	// online.
	flushEvery = 250 * time.Millisecond
)

// Keeper keeps a Redis sorted set whose members are the users with at
// least one open stream on any instance, scored with the Unix time in
// milliseconds until which they count as online. Each instance refreshes
// its own users, in pipelined batches, with ZADD GT (so it never shortens
// what another instance wrote), and prunes members whose time has passed
// (no live instance holds them: it would have refreshed them). One keeper
// serves every handler of a process with the same Redis, key and interval,
// across reloads.
type Keeper struct {
	client   redis.UniversalClient
	key      string
	interval time.Duration
	logger   *zap.Logger
	m        *metrics.Set
	cancel   context.CancelFunc
	done     chan struct{}

	mu     sync.Mutex
	users  map[string]int      // this instance's streams per user
	fresh  map[string]struct{} // users online here since the last write
	failed bool                // the last write failed (logged once per outage)
}

// New starts a keeper of the sorted set key on client, refreshing every
// interval.
func New(client redis.UniversalClient, key string, interval time.Duration, logger *zap.Logger, m *metrics.Set) *Keeper {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Keeper{
		client: client, key: key, interval: interval, logger: logger, m: m,
		cancel: cancel, done: make(chan struct{}),
		users: make(map[string]int), fresh: make(map[string]struct{}),
	}
	go p.run(ctx)
	return p
}

// Join counts a stream of user; its first makes the user online within
// flushEvery.
func (p *Keeper) Join(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users[user]++; p.users[user] == 1 {
		p.fresh[user] = struct{}{}
	}
}

// Leave uncounts a stream of user. The member is left alone: another
// instance may hold the user, and the score runs out by itself.
func (p *Keeper) Leave(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users[user]--; p.users[user] <= 0 {
		delete(p.users, user)
		delete(p.fresh, user)
	}
}

// run writes new users every flushEvery and refreshes every user and
// prunes every interval, until ctx ends.
func (p *Keeper) run(ctx context.Context) {
	defer close(p.done)
	flush := time.NewTicker(min(flushEvery, p.interval))
	defer flush.Stop()
	refresh := time.NewTicker(p.interval)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush.C:
			p.write(ctx, false)
		case <-refresh.C:
			p.write(ctx, true)
		}
	}
}

// write adds the fresh users, or every user and prunes when all is set.
func (p *Keeper) write(ctx context.Context, all bool) {
	p.mu.Lock()
	var users []string
	if all {
		users = make([]string, 0, len(p.users))
		for u := range p.users {
			users = append(users, u)
		}
	} else {
		users = make([]string, 0, len(p.fresh))
		for u := range p.fresh {
			users = append(users, u)
		}
	}
	p.mu.Unlock()
	if len(users) == 0 && !all {
		return
	}

	now := time.Now()
	until := float64(now.Add(lifetimes * p.interval).UnixMilli())
	_, err := p.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for start := 0; start < len(users); start += batchSize {
			batch := users[start:min(start+batchSize, len(users))]
			members := make([]redis.Z, len(batch))
			for i, u := range batch {
				members[i] = redis.Z{Score: until, Member: u}
			}
			pipe.ZAddArgs(ctx, p.key, redis.ZAddArgs{GT: true, Members: members})
		}
		if all {
			pipe.ZRemRangeByScore(ctx, p.key, "-inf", "("+formatMillis(now))
		}
		return nil
	})
	p.m.PresenceCommands.Add(float64((len(users)+batchSize-1)/batchSize + boolInt(all)))
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil && !errors.Is(err, context.Canceled) {
		if !p.failed {
			p.failed = true
			p.logger.Warn("presence could not be written; retrying", zap.Error(err))
		}
		return
	}
	if p.failed {
		p.failed = false
		p.logger.Info("presence written again")
	}
	for _, u := range users {
		delete(p.fresh, u)
	}
}

// Stop stops the keeper, once the last handler using it is gone. Members
// it wrote run out by themselves.
func (p *Keeper) Stop() {
	p.cancel()
	<-p.done
}

func formatMillis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
