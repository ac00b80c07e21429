package testkit

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// AuthAPI is a stub of the site's auth API: it maps tokens to answers.
type AuthAPI struct {
	*httptest.Server
	calls   atomic.Int64
	mu      sync.Mutex
	lastReq http.Header
	remotes map[string]bool // client addresses seen: one per connection
	delay   time.Duration
	replies map[string]AuthReply
}

// AuthReply is the auth API's answer for a token.
type AuthReply struct {
	Status int
	Body   string
}

// StartAuthAPI serves replies until the test ends; an unknown token gets
// 401.
func StartAuthAPI(t testing.TB, replies map[string]AuthReply) *AuthAPI {
	t.Helper()
	a := &AuthAPI{replies: replies, remotes: map[string]bool{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.calls.Add(1)
		a.mu.Lock()
		a.lastReq = r.Header.Clone()
		a.remotes[r.RemoteAddr] = true
		delay := a.delay
		a.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		a.mu.Lock()
		rep, known := a.replies[token]
		a.mu.Unlock()
		if !ok || !known {
			rep = AuthReply{http.StatusUnauthorized, `{"detail":"Invalid token"}`}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.Status)
		_, _ = io.WriteString(w, rep.Body)
	}))
	t.Cleanup(a.Close)
	return a
}

// Calls is how many requests reached the API.
func (a *AuthAPI) Calls() int64 { return a.calls.Load() }

// SetReply changes the answer for token from now on.
func (a *AuthAPI) SetReply(token string, rep AuthReply) {
	a.mu.Lock()
	a.replies[token] = rep
	a.mu.Unlock()
}

// SetDelay delays every answer from now on.
func (a *AuthAPI) SetDelay(d time.Duration) {
	a.mu.Lock()
	a.delay = d
	a.mu.Unlock()
}

// Connections returns how many distinct connections reached the API.
func (a *AuthAPI) Connections() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.remotes)
}

// LastHeaders returns the headers of the last request.
func (a *AuthAPI) LastHeaders() http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastReq
}

// Users returns answers for the tokens "<name>-token": {"user_id": "<name>"}.
func Users(names ...string) map[string]AuthReply {
	m := map[string]AuthReply{}
	for _, n := range names {
		m[n+"-token"] = AuthReply{200, fmt.Sprintf(`{"user_id":%q}`, n)}
	}
	return m
}
