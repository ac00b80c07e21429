package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	partition "github.com/caddy-notify/notify/publish"
)

// pubConfig says what to publish and where.
type pubConfig struct {
	mode    string // pubsub, stream or nchan
	redis   string // host:port; with cluster, seeds, comma-separated
	cluster bool   // redis is a Redis Cluster
	channel string // pubsub channel
	stream  string // stream key (mode stream)
	// partitions and sharded are the handler's settings: each event goes
	// to its recipient's partition (publish.Partition), with SPUBLISH
	// when sharded.
	partitions int
	sharded    bool
	// foreign addresses every event to a user with no stream (ids from
	// users to 2·users−1): traffic the server reads and delivers to nobody.
	foreign bool
	// via is how events reach Redis: "redis" (the tool publishes itself)
	// or "http" (POSTed to pubURL: notify_publish, or nchan's publisher).
	via      string
	pubURL   string // via http: publisher URL, {user} replaced by the recipient
	workers  int    // via http: concurrent HTTP publishers
	batch    int    // via http: events per POST (a JSON array when > 1)
	rate     float64
	duration time.Duration
	users    int
	pad      int
	// fan, when set, makes every event a fan-out message to a group of
	// users (fan.go) instead of a message to one user.
	fan *fanout
	// switched, once set (by a changed reload, reload.go), makes the
	// publisher follow the server's new source: it publishes to newName
	// (channel or stream) or, by HTTP, to newPubURL.
	switched  *atomic.Bool
	newName   string
	newPubURL string
}

// names returns the channel and stream the events go to now.
func (cfg *pubConfig) names() (channel, stream string) {
	if cfg.switched != nil && cfg.switched.Load() && cfg.newName != "" {
		return cfg.newName, cfg.newName
	}
	return cfg.channel, cfg.stream
}

// url returns the publisher URL the events go to now.
func (cfg *pubConfig) url() string {
	if cfg.switched != nil && cfg.switched.Load() && cfg.newPubURL != "" {
		return cfg.newPubURL
	}
	return cfg.pubURL
}

// message appends the message of event k, stamped now, to dst.
func (cfg *pubConfig) message(dst []byte, k int, now int64) []byte {
	if cfg.fan != nil {
		return cfg.fan.appendMessage(dst, k, now)
	}
	user := k % cfg.users
	if cfg.foreign {
		user += cfg.users
	}
	return appendMessage(dst, user, uint64(k/cfg.users+1), now, cfg.pad)
}

// pubResult is what the publisher did.
type pubResult struct {
	Attempted int           // events numbered (K): receivers expect these
	Errors    uint64        // events whose publish failed
	Elapsed   time.Duration // from the first to the last publish
	Behind    bool          // the publisher could not keep up with the rate
}

// tick is the publisher's pacing interval: events due in it are sent as one
// pipelined batch.
const tick = 5 * time.Millisecond

// publish sends rate·duration events, event k to user k mod users with seq
// k/users+1, each stamped with its send time.
func publish(ctx context.Context, cfg pubConfig) (pubResult, error) {
	total := int(cfg.rate*cfg.duration.Seconds() + 0.5)
	var res pubResult
	if total == 0 {
		return res, nil
	}
	var send func(ks []int) uint64 // returns failures
	via := cfg.via
	if cfg.mode == "nchan" {
		via = "http" // nchan's Redis mode cannot be fed by PUBLISH
	}
	switch {
	case via == "redis" && (cfg.mode == "pubsub" || cfg.mode == "stream"):
		var rdb redis.UniversalClient
		if cfg.cluster {
			rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(cfg.redis, ","), PoolSize: 4})
		} else {
			rdb = redis.NewClient(&redis.Options{Addr: cfg.redis, PoolSize: 4})
		}
		defer rdb.Close()
		n := max(cfg.partitions, 1)
		if err := rdb.Ping(ctx).Err(); err != nil {
			return res, fmt.Errorf("redis %s: %w", cfg.redis, err)
		}
		var buf []byte
		send = func(ks []int) uint64 {
			pipe := rdb.Pipeline()
			now := time.Now().UnixNano()
			channel, stream := cfg.names()
			for _, k := range ks {
				user := k % cfg.users
				if cfg.foreign {
					user += cfg.users
				}
				buf = cfg.message(buf[:0], k, now)
				part := partition.Partition(strconv.Itoa(user), n) // 0 for fan-out: one partition
				switch {
				case cfg.mode == "stream":
					pipe.XAdd(ctx, &redis.XAddArgs{Stream: partition.Name(stream, part, n), MaxLen: 100000, Approx: true,
						Values: []any{"data", string(buf)}})
				case cfg.sharded:
					pipe.SPublish(ctx, partition.Name(channel, part, n), string(buf))
				default:
					pipe.Publish(ctx, partition.Name(channel, part, n), string(buf))
				}
			}
			cmds, _ := pipe.Exec(ctx)
			var failed uint64
			for _, c := range cmds {
				if c.Err() != nil {
					failed++
				}
			}
			return failed
		}
	case via == "http":
		send = httpSender(ctx, cfg)
		defer send(nil) // stops the workers
	default:
		return res, fmt.Errorf("unknown -mode %q or -publish %q (modes pubsub, stream or nchan; publishing redis or http)", cfg.mode, cfg.via)
	}

	start := time.Now()
	// Past this the publisher gives up on the rate; the report says so.
	giveUp := start.Add(cfg.duration + 10*time.Second)
	ks := make([]int, 0, 1024)
	t := time.NewTicker(tick)
	defer t.Stop()
	k := 0
	for k < total {
		due := min(total, int(time.Since(start).Seconds()*cfg.rate)+1)
		ks = ks[:0]
		for ; k < due && len(ks) < cap(ks); k++ {
			ks = append(ks, k)
		}
		if len(ks) > 0 {
			res.Errors += send(ks)
		}
		if time.Now().After(giveUp) || ctx.Err() != nil {
			res.Behind = true
			break
		}
		if k < due {
			continue // a backlog: send the next batch at once
		}
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	res.Attempted = k
	res.Elapsed = time.Since(start)
	if res.Elapsed > cfg.duration+cfg.duration/10+time.Second {
		res.Behind = true
	}
	return res, nil
}

// httpSender returns the send function of HTTP publishing: cfg.workers
// goroutines POST the events, one per request (as nchan's publisher takes
// them) or cfg.batch per request as a JSON array (notify_publish); send
// waits until every event it was given is answered. send(nil) stops the
// workers.
func httpSender(ctx context.Context, cfg pubConfig) func(ks []int) uint64 {
	workers, batch := max(cfg.workers, 1), max(cfg.batch, 1)
	tr := &http.Transport{MaxIdleConnsPerHost: workers, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	jobs := make(chan []int, workers)
	var failed atomic.Uint64
	var wg, pending sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for ks := range jobs {
				buf = buf[:0]
				if len(ks) > 1 {
					buf = append(buf, '[')
				}
				now := time.Now().UnixNano()
				for i, k := range ks {
					if i > 0 {
						buf = append(buf, ',')
					}
					buf = cfg.message(buf, k, now)
				}
				if len(ks) > 1 {
					buf = append(buf, ']')
				}
				if !postOnce(ctx, client, userURL(cfg.url(), ks[0]%cfg.users), buf) {
					failed.Add(uint64(len(ks)))
				}
				pending.Add(-len(ks))
			}
		}()
	}
	return func(ks []int) uint64 {
		if ks == nil {
			close(jobs)
			wg.Wait()
			tr.CloseIdleConnections()
			return 0
		}
		before := failed.Load()
		pending.Add(len(ks))
		for len(ks) > 0 {
			n := min(batch, len(ks))
			jobs <- ks[:n:n]
			ks = ks[n:]
		}
		pending.Wait()
		return failed.Load() - before
	}
}

func postOnce(ctx context.Context, c *http.Client, u string, body []byte) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}
