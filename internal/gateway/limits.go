package gateway

import (
	"sync"
	"sync/atomic"
)

// limits counts one handler's streams against max_streams (checked
// before authentication, so that it also bounds the auth checks under way)
// and max_streams_per_user (checked once the user is known). Zero limits
// are off. Both are per Caddy instance. The bounds may change while
// streams are open (a reload): every stream is counted, whatever the
// bounds, so that a new bound applies to the streams already open.
type limits struct {
	max, perUser atomic.Int64

	open atomic.Int64 // streams open or being opened

	mu    sync.Mutex
	users map[string]int // streams per user
}

func newLimits(max, perUser int) *limits {
	l := &limits{users: make(map[string]int)}
	l.set(max, perUser)
	return l
}

// set changes the bounds, for the streams opened from now on.
func (l *limits) set(max, perUser int) {
	l.max.Store(int64(max))
	l.perUser.Store(int64(perUser))
}

// reserve takes a place for a new stream; false means max_streams is
// reached. Every true must be matched by unreserve.
func (l *limits) reserve() bool {
	max := l.max.Load()
	if n := l.open.Add(1); max > 0 && n > max {
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
	perUser := int(l.perUser.Load())
	l.mu.Lock()
	defer l.mu.Unlock()
	if perUser > 0 && l.users[user] >= perUser {
		return false
	}
	l.users[user]++
	return true
}

func (l *limits) releaseUser(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.users[user]--; l.users[user] <= 0 {
		delete(l.users, user)
	}
}
