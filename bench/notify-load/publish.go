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
	foreign  bool
	pubURL   string // mode nchan: publisher URL with {user}
	workers  int    // mode nchan: concurrent HTTP publishers
	rate     float64
	duration time.Duration
	users    int
	pad      int
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
	switch cfg.mode {
	case "pubsub", "stream":
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
			for _, k := range ks {
				user := k % cfg.users
				if cfg.foreign {
					user += cfg.users
				}
				buf = appendMessage(buf[:0], user, uint64(k/cfg.users+1), now, cfg.pad)
				part := partition.Partition(strconv.Itoa(user), n)
				switch {
				case cfg.mode == "stream":
					pipe.XAdd(ctx, &redis.XAddArgs{Stream: partition.Name(cfg.stream, part, n), MaxLen: 100000, Approx: true,
						Values: []any{"data", string(buf)}})
				case cfg.sharded:
					pipe.SPublish(ctx, partition.Name(cfg.channel, part, n), string(buf))
				default:
					pipe.Publish(ctx, partition.Name(cfg.channel, part, n), string(buf))
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
	case "nchan":
		if cfg.workers < 1 {
			cfg.workers = 8
		}
		tr := &http.Transport{MaxIdleConnsPerHost: cfg.workers, DisableCompression: true}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		jobs := make(chan int, cfg.workers)
		var failed atomic.Uint64
		var wg sync.WaitGroup
		var batch sync.WaitGroup
		for range cfg.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf []byte
				for k := range jobs {
					buf = appendMessage(buf[:0], k%cfg.users, uint64(k/cfg.users+1), time.Now().UnixNano(), cfg.pad)
					if !postOnce(ctx, client, userURL(cfg.pubURL, k%cfg.users), buf) {
						failed.Add(1)
					}
					batch.Done()
				}
			}()
		}
		defer func() { close(jobs); wg.Wait() }()
		send = func(ks []int) uint64 {
			before := failed.Load()
			batch.Add(len(ks))
			for _, k := range ks {
				jobs <- k
			}
			batch.Wait()
			return failed.Load() - before
		}
	default:
		return res, fmt.Errorf("unknown -mode %q (pubsub, stream or nchan)", cfg.mode)
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
