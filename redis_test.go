package notify

import (
	"testing"
	"time"
)

func TestRedisOptions(t *testing.T) {
	o, err := redisOptions("rediss://app:s3cret@cache.internal:6380/3?dial_timeout=2s&pool_size=7&max_retries=4&client_name=edge")
	if err != nil {
		t.Fatal(err)
	}
	if o.Addrs[0] != "cache.internal:6380" || o.Username != "app" || o.Password != "s3cret" || o.DB != 3 ||
		o.TLSConfig == nil || o.DialTimeout != 2*time.Second || o.PoolSize != 7 || o.MaxRetries != 4 || o.ClientName != "edge" {
		t.Errorf("options not carried over: %+v", o)
	}
	o, err = redisOptions("redis://127.0.0.1:6379")
	if err != nil || o.ClientName != "caddy-notify" || o.TLSConfig != nil || o.DB != 0 {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	for _, bad := range []string{"http://x", "redis://x:1/notadb", "::"} {
		if _, err := redisOptions(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestHubKey(t *testing.T) {
	key := func(u string, src source) string {
		o, err := redisOptions(u)
		if err != nil {
			t.Fatal(err)
		}
		return hubKey(u, o, src)
	}
	ch := source{channel: "n"}
	base := key("redis://a:1/0", ch)
	same := []string{"redis://a:1", "redis://a:1/0"}
	different := map[string]source{
		"redis://a:2/0":                 ch,
		"redis://a:1/1":                 ch,
		"redis://u:p@a:1/0":             ch,
		"rediss://a:1/0":                ch,
		"redis://a:1/0?pool_size=5":     ch,
		"redis://a:1/0?":                {channel: "other"},
		"redis://a:1/0?dial_timeout=1s": ch,
	}
	for _, u := range same {
		if key(u, ch) != base {
			t.Errorf("%q should share the hub of redis://a:1/0", u)
		}
	}
	for u, src := range different {
		if key(u, src) == base {
			t.Errorf("%q (%v) must not share the hub of redis://a:1/0", u, src)
		}
	}
	if key("redis://a:1/0", source{stream: "n", history: historyConfig{10, 100}}) ==
		key("redis://a:1/0", source{stream: "n", history: historyConfig{20, 100}}) {
		t.Error("different windows must not share a stream reader")
	}
}
