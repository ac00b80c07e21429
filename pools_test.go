package notify

import "github.com/redis/go-redis/v9"

// len counts the values in the pool.
func (p pool[T]) len() int {
	n := 0
	p.p.Range(func(_, _ any) bool { n++; return true })
	return n
}

// get returns the value of key, or the zero T when there is none.
func (p pool[T]) get(key string) T {
	var found T
	p.p.Range(func(k, v any) bool {
		if k == key {
			found = v.(T)
			return false
		}
		return true
	})
	return found
}

// clientOf is the go-redis client a running notify handler reads with.
func clientOf(h *Handler) redis.UniversalClient {
	return clients.get(hubSets.get(h.hubKey).clientKey).client
}
