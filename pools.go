package notify

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/redis/go-redis/v9"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-notify/notify/internal/control"
	"github.com/caddy-notify/notify/internal/hub"
	"github.com/caddy-notify/notify/internal/presence"
	"github.com/caddy-notify/notify/internal/redisurl"
)

// The resources that outlive a config: each kind in a pool of its own,
// shared by the handlers of every loaded config, so that a reload with the
// same settings keeps them (Caddy provisions the new config before it
// cleans up the old one). Keys embed credentials: never log them.
var (
	// clients holds the go-redis clients of this process: one per Redis
	// deployment for pub/sub, and one per Redis deployment and stream
	// (with its partitions) for stream mode (see acquireClient).
	clients = newPool[*pooledClient]()
	// hubSets holds one hub.Set per Redis deployment and source (see
	// hubKey): the subscriptions or stream readers, and their indexes.
	hubSets = newPool[*pooledHubs]()
	// controlChannels holds one reader per control channel.
	controlChannels = newPool[*pooledControl]()
	// presenceKeepers holds one keeper per presence key and interval.
	presenceKeepers = newPool[*pooledPresence]()
)

// pool is a caddy.UsagePool of one kind of value.
type pool[T caddy.Destructor] struct{ p *caddy.UsagePool }

func newPool[T caddy.Destructor]() pool[T] { return pool[T]{caddy.NewUsagePool()} }

// acquire returns the value for key, made by create when there is none,
// and counts one more user of it.
func (p pool[T]) acquire(key string, create func() T) T {
	v, _, _ := p.p.LoadOrNew(key, func() (caddy.Destructor, error) { return create(), nil })
	return v.(T)
}

// release counts one user less of key's value: the last one destroys it.
func (p pool[T]) release(key string) error {
	_, err := p.p.Delete(key)
	return err
}

// pooledClient is a go-redis client, closed by its last user.
type pooledClient struct{ client redis.UniversalClient }

// Destruct closes the client.
func (c *pooledClient) Destruct() error { return c.client.Close() }

// acquireClient returns the pooled client for rc and the source a handler
// reads or writes (stream is empty in pub/sub mode), and the key that
// releases it. It does not dial.
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
// other history_entries, history_bytes or max_message_size (two hub sets,
// e.g. for a moment during a reload that changes them) share a client sized
// for one set of readers: their XREADs then take turns for the pool's
// connections (each holds one for at most a second), which delays delivery
// but never stops it.
func acquireClient(rc *redisurl.Config, stream string, partitions int) (redis.UniversalClient, string) {
	key := rc.Key()
	if stream != "" {
		key += fmt.Sprintf(" xread %q %d", stream, max(partitions, 1))
	}
	c := clients.acquire(key, func() *pooledClient {
		if stream != "" && partitions > 1 {
			rc.SetMinPool(partitions + 10*runtime.GOMAXPROCS(0))
		}
		return &pooledClient{rc.NewClient()}
	})
	return c.client, key
}

// pooledHubs is a hub.Set and the client it reads with.
type pooledHubs struct {
	set       *hub.Set
	clientKey string
}

// Destruct stops the hubs, which ends their streams, and releases the
// client.
func (p *pooledHubs) Destruct() error {
	return errors.Join(p.set.Stop(), clients.release(p.clientKey))
}

// pooledControl is a control channel's reader and its client.
type pooledControl struct {
	channel   *control.Channel
	clientKey string
}

// Destruct ends the subscription and releases the client.
func (p *pooledControl) Destruct() error {
	return errors.Join(p.channel.Stop(), clients.release(p.clientKey))
}

// pooledPresence is a presence keeper and its client.
type pooledPresence struct {
	keeper    *presence.Keeper
	clientKey string
}

// Destruct stops the keeper and releases the client.
func (p *pooledPresence) Destruct() error {
	p.keeper.Stop()
	return clients.release(p.clientKey)
}

// Interface guards
var (
	_ caddy.Destructor = (*pooledClient)(nil)
	_ caddy.Destructor = (*pooledHubs)(nil)
	_ caddy.Destructor = (*pooledControl)(nil)
	_ caddy.Destructor = (*pooledPresence)(nil)
)
