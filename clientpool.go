package notify

import (
	"fmt"
	"runtime"

	"github.com/redis/go-redis/v9"

	"github.com/caddyserver/caddy/v2"
)

// clients holds the go-redis clients of this process: one per Redis
// deployment for pub/sub, and one per Redis deployment and stream (with its
// partitions) for stream mode. notify handlers (through their hubSet) and
// notify_publish handlers with the same settings take the same client, so
// that they share one connection pool, and a config reload that keeps the
// settings keeps it. A client closes when its last user releases it. Keys
// embed credentials: never log them.
var clients = caddy.NewUsagePool()

// pooledClient is what the pool holds: the client, closed by Destruct.
type pooledClient struct{ client redis.UniversalClient }

// Destruct closes the client once its last user has released it.
func (c pooledClient) Destruct() error { return c.client.Close() }

// acquireClient returns the pooled client for rc and the source a handler
// reads or writes (stream is empty in pub/sub mode), and the key that
// releaseClient gives it back with. It does not dial.
//
// Why stream mode has a client per stream: each partition's stream reader
// holds a connection of the pool while it blocks in XREAD, so a client
// read in stream mode with n partitions gets a pool of n connections more
// than go-redis's default (10 per GOMAXPROCS), and a pool's size is fixed
// when the client is built. A client per (deployment, stream, partitions)
// is sized for exactly the readers that use it: handlers reading other
// streams never take its connections. A notify_publish handler for that
// stream computes the same key and shares it; its pipelines run on
// go-redis's separate pipeline pool, never on the readers' connections.
// Pub/sub subscriptions hold connections of their own, outside the pool:
// every pub/sub user of a deployment shares one client, whatever its
// channel.
//
// Two notify handlers reading the same stream with the same partitions but
// other history_entries, history_bytes or max_message_size (two hubSets,
// e.g. for a moment during a reload that changes them) share a client sized
// for one set of readers: their XREADs then take turns for the pool's
// connections (each holds one for at most readBlock), which delays
// delivery but never stops it.
func acquireClient(rc *redisConfig, stream string, partitions int) (redis.UniversalClient, string) {
	key := poolKey(rc, stream, partitions)
	v, _, _ := clients.LoadOrNew(key, func() (caddy.Destructor, error) {
		if stream != "" && partitions > 1 {
			rc.setMinPool(partitions + 10*runtime.GOMAXPROCS(0))
		}
		return pooledClient{rc.newClient()}, nil
	})
	return v.(pooledClient).client, key
}

// releaseClient gives back a client acquireClient returned: the last
// release closes it.
func releaseClient(key string) error {
	_, err := clients.Delete(key)
	return err
}

// poolKey identifies a pooled client: the deployment (rc.key) and, in
// stream mode, the stream and its partitions (see acquireClient).
func poolKey(rc *redisConfig, stream string, partitions int) string {
	if stream == "" {
		return rc.key()
	}
	return rc.key() + fmt.Sprintf(" xread %q %d", stream, max(partitions, 1))
}
