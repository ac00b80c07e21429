package notify

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

const (
	// presenceLifetimes is how many refresh intervals a member counts as
	// online after its last refresh: a user is offline at most that long
	// after its last stream closed, or its instance died.
	presenceLifetimes = 3
	// presenceBatch is how many members one ZADD carries.
	presenceBatch = 1000
	// presenceFlush bounds how long a user's first stream waits to be seen
	// online.
	presenceFlush = 250 * time.Millisecond
)

// presence keeps a Redis sorted set whose members are the users with at
// least one open stream on any instance, scored with the Unix time in
// milliseconds until which they count as online. Each instance refreshes
// its own users, in pipelined batches, with ZADD GT (so it never shortens
// what another instance wrote), and prunes members whose time has passed
// (no live instance holds them: it would have refreshed them). One keeper
// serves every handler of a process with the same Redis, key and interval,
// across reloads.
type presence struct {
	client    redis.UniversalClient
	clientKey string // the client's key in the clients pool, or "" when it is presence's own
	key       string
	interval  time.Duration
	logger    *zap.Logger
	cancel    context.CancelFunc
	done      chan struct{}

	mu     sync.Mutex
	users  map[string]int      // this instance's streams per user
	fresh  map[string]struct{} // users online here since the last write
	failed bool                // the last write failed (logged once per outage)
}

// newPresence starts a keeper on client, which it closes when destroyed.
func newPresence(client redis.UniversalClient, key string, interval time.Duration, logger *zap.Logger) *presence {
	ctx, cancel := context.WithCancel(context.Background())
	p := &presence{
		client: client, key: key, interval: interval, logger: logger,
		cancel: cancel, done: make(chan struct{}),
		users: make(map[string]int), fresh: make(map[string]struct{}),
	}
	go p.run(ctx)
	return p
}

// join counts a stream of user; its first makes the user online within
// presenceFlush.
func (p *presence) join(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users[user]++; p.users[user] == 1 {
		p.fresh[user] = struct{}{}
	}
}

// leave uncounts a stream of user. The member is left alone: another
// instance may hold the user, and the score runs out by itself.
func (p *presence) leave(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users[user]--; p.users[user] <= 0 {
		delete(p.users, user)
		delete(p.fresh, user)
	}
}

// run writes new users every presenceFlush and refreshes every user and
// prunes every interval, until ctx ends.
func (p *presence) run(ctx context.Context) {
	defer close(p.done)
	flush := time.NewTicker(min(presenceFlush, p.interval))
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
func (p *presence) write(ctx context.Context, all bool) {
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
	until := float64(now.Add(presenceLifetimes * p.interval).UnixMilli())
	_, err := p.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for start := 0; start < len(users); start += presenceBatch {
			batch := users[start:min(start+presenceBatch, len(users))]
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
	metrics.presenceCommands.Add(float64((len(users)+presenceBatch-1)/presenceBatch + boolInt(all)))
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

// Destruct stops the keeper when the last config using it is unloaded.
func (p *presence) Destruct() error {
	p.cancel()
	<-p.done
	if p.clientKey != "" {
		return releaseClient(p.clientKey)
	}
	return p.client.Close()
}

func formatMillis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
