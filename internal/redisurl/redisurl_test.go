package redisurl

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisOptions(t *testing.T) {
	c, err := Parse("rediss://app:s3cret@cache.internal:6380/3?dial_timeout=2s&pool_size=7&max_retries=4&client_name=edge")
	if err != nil {
		t.Fatal(err)
	}
	o := c.single
	if c.kind != kindSingle || o.Addr != "cache.internal:6380" || o.Username != "app" || o.Password != "s3cret" || o.DB != 3 ||
		o.TLSConfig == nil || o.DialTimeout != 2*time.Second || o.PoolSize != 7 || o.MaxRetries != 4 || o.ClientName != "edge" {
		t.Errorf("options not carried over: %+v", o)
	}
	c, err = Parse("redis://127.0.0.1:6379")
	if err != nil || c.single.ClientName != "caddy-notify" || c.single.TLSConfig != nil || c.single.DB != 0 {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	if _, ok := c.NewClient().(*redis.Client); !ok {
		t.Error("redis:// must build a plain client")
	}
	for _, bad := range []string{"http://x", "redis://x:1/notadb", "::"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRedisSentinelOptions(t *testing.T) {
	c, err := Parse("rediss+sentinel://app:s3cret@s1:26379,s2:26380,s3:26381/2?master_name=main" +
		"&sentinel_username=sent&sentinel_password=sp%40ss&dial_timeout=3s&pool_size=9")
	if err != nil {
		t.Fatal(err)
	}
	o := c.failover
	if c.kind != kindSentinel || o.MasterName != "main" || strings.Join(o.SentinelAddrs, ",") != "s1:26379,s2:26380,s3:26381" ||
		o.Username != "app" || o.Password != "s3cret" || o.SentinelUsername != "sent" || o.SentinelPassword != "sp@ss" ||
		o.DB != 2 || o.TLSConfig == nil || o.DialTimeout != 3*time.Second || o.PoolSize != 9 || o.ClientName != "caddy-notify" {
		t.Errorf("options not carried over: %+v", o)
	}
	c, err = Parse("redis+sentinel://s1:26379?master_name=m")
	if err != nil || c.failover.TLSConfig != nil || c.failover.Username != "" || c.failover.SentinelPassword != "" {
		t.Errorf("plain sentinel: %+v, %v", c, err)
	}
	if _, ok := c.NewClient().(*redis.Client); !ok {
		t.Error("redis+sentinel:// must build a failover client")
	}
}

func TestRedisClusterOptions(t *testing.T) {
	c, err := Parse("rediss+cluster://app:s3cret@n1:7000,n2:7001?read_timeout=4s&pool_size=5")
	if err != nil {
		t.Fatal(err)
	}
	o := c.cluster
	if c.kind != kindCluster || strings.Join(o.Addrs, ",") != "n1:7000,n2:7001" || o.Username != "app" ||
		o.Password != "s3cret" || o.TLSConfig == nil || o.ReadTimeout != 4*time.Second || o.PoolSize != 5 {
		t.Errorf("options not carried over: %+v", o)
	}
	// One seed is still a cluster: a UniversalClient would make it a
	// plain client.
	c, err = Parse("redis+cluster://n1:7000")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.NewClient().(*redis.ClusterClient); !ok {
		t.Error("redis+cluster:// with one seed must build a cluster client")
	}
}

// TestRedisURLErrors checks the reasons given for bad URLs, and that none
// of them quotes the URL or its credentials.
func TestRedisURLErrors(t *testing.T) {
	for url, want := range map[string]string{
		"redis+sentinel://u:hunter2@s1:26379":                             "needs ?master_name=",
		"redis+sentinel://s1:26379?master_name=m&password=hunter2":        "write the data nodes' user:password@ before the hosts",
		"redis+sentinel://s1:26379?master_name=m&hunter2=1":               "an unknown query option",
		"redis+cluster://u:hunter2@n1:7000,hunter2":                       "every cluster node must be written host:port",
		"redis+cluster://u:hunter2@n1:7000/3":                             "database 0 only",
		"redis+cluster://n1:7000?dial_timeout=hunter2":                    "a query option has an invalid value",
		"redis+ring://u:hunter2@n1:7000":                                  "not a valid redis://, rediss://, redis+sentinel:// or redis+cluster:// URL",
		"redis+sentinel://u:hunter2@s1:26379/x?master_name=m":             "the database must be a number",
		"rediss+sentinel://s1:26379,:1?master_name=m&sentinel_password=x": "every sentinel node must be written host:port",
	} {
		_, err := Parse(url)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", url, err, want)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error quotes a credential: %v", url, err)
		}
	}
}
