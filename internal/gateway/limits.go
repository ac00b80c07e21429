package gateway

import (
	"sync"
	"sync/atomic"
)

// limits counts one handler's streams against max_streams (checked
// before authentication, so that it also bounds the auth checks under way)
// and max_streams_per_user (checked once the user is known). Zero limits
// are off. Both are per Caddy instance.
type limits struct {
	max, perUser int

	open atomic.Int64 // streams open or being opened

	mu    sync.Mutex
	users map[string]int // streams per user, when perUser > 0
}

func newLimits(max, perUser int) *limits {
	return &limits{max: max, perUser: perUser, users: make(map[string]int)}
}

// reserve takes a place for a new stream; false means max_streams is
// reached. Every true must be matched by unreserve.
func (l *limits) reserve() bool {
	if n := l.open.Add(1); l.max > 0 && n > int64(l.max) {
		l.open.Add(-1)
		return false
	}
	return true
}

func (l *limits) unreserve() { l.open.Add(-1) }

// reserveUser takes a place among user's streams; false means
// max_streams_per_user is reached. Every true must be matched by
// releaseUser.
func (l *limits) reserveUser(user string) bool {
	if l.perUser <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.users[user] >= l.perUser {
		return false
	}
	l.users[user]++
	return true
}

func (l *limits) releaseUser(user string) {
	if l.perUser <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.users[user]--; l.users[user] <= 0 {
		delete(l.users, user)
	}
}
