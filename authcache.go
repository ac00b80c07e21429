package notify

import (
	"crypto/sha256"
	"sync"
	"time"
)

// maxAuthCacheEntries bounds the auth cache; past it, new answers are not
// cached until expired ones are swept.
const maxAuthCacheEntries = 100_000

// credentialsKey identifies a token and cookie pair without keeping either:
// a SHA-256 digest, so a collision can never hand one user's id to another.
func credentialsKey(token, cookie string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(token))
	h.Write([]byte{0})
	h.Write([]byte(cookie))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// authCache remembers successful auth answers for a short time (auth_cache).
// Only successes are cached: a refusal is always asked again. The trade-off:
// a token revoked at the auth API still opens streams until its entry
// expires.
type authCache struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]authCacheEntry
}

type authCacheEntry struct {
	userID  string
	expires time.Time
}

func newAuthCache(ttl time.Duration) *authCache {
	return &authCache{ttl: ttl, now: time.Now, entries: make(map[[sha256.Size]byte]authCacheEntry)}
}

func (c *authCache) get(key [sha256.Size]byte) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return "", false
	}
	if !c.now().Before(e.expires) {
		delete(c.entries, key)
		return "", false
	}
	return e.userID, true
}

func (c *authCache) put(key [sha256.Size]byte, userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.entries) >= maxAuthCacheEntries {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxAuthCacheEntries {
			return
		}
	}
	c.entries[key] = authCacheEntry{userID: userID, expires: now.Add(c.ttl)}
}
