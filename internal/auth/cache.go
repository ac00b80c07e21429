package auth

import (
	"sync"
	"time"
)

// maxCacheEntries bounds the auth cache; past it, new answers are not
// cached until expired ones are swept.
const maxCacheEntries = 100_000

// cache remembers successful auth answers for a short time (auth_cache).
// Only successes are cached: a refusal is always asked again. The trade-off:
// a token revoked at the auth API still opens streams until its entry
// expires.
type cache struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[Key]cacheEntry
}

type cacheEntry struct {
	id      Identity
	expires time.Time
}

func newCache(ttl time.Duration) *cache {
	return &cache{ttl: ttl, now: time.Now, entries: make(map[Key]cacheEntry)}
}

func (c *cache) get(key Key) (Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return Identity{}, false
	}
	if !c.now().Before(e.expires) {
		delete(c.entries, key)
		return Identity{}, false
	}
	return e.id, true
}

func (c *cache) put(key Key, id Identity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.entries) >= maxCacheEntries {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxCacheEntries {
			return
		}
	}
	c.entries[key] = cacheEntry{id: id, expires: now.Add(c.ttl)}
}
