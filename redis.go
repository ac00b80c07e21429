package notify

import (
	"fmt"
	"net/url"

	"github.com/redis/go-redis/v9"
)

// redisOptions parses a redis:// or rediss:// URL, query options included
// (dial_timeout, pool_size, max_retries, ...), into options for a
// UniversalClient, so Sentinel and Cluster deployments can be added as
// further options without changing the hub.
func redisOptions(rawURL string) (*redis.UniversalOptions, error) {
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	name := o.ClientName
	if name == "" {
		name = "caddy-notify"
	}
	return &redis.UniversalOptions{
		Addrs:           []string{o.Addr},
		ClientName:      name,
		Protocol:        o.Protocol,
		Username:        o.Username,
		Password:        o.Password,
		DB:              o.DB,
		MaxRetries:      o.MaxRetries,
		MinRetryBackoff: o.MinRetryBackoff,
		MaxRetryBackoff: o.MaxRetryBackoff,
		DialTimeout:     o.DialTimeout,
		ReadTimeout:     o.ReadTimeout,
		WriteTimeout:    o.WriteTimeout,
		PoolFIFO:        o.PoolFIFO,
		PoolSize:        o.PoolSize,
		PoolTimeout:     o.PoolTimeout,
		MinIdleConns:    o.MinIdleConns,
		MaxIdleConns:    o.MaxIdleConns,
		MaxActiveConns:  o.MaxActiveConns,
		ConnMaxIdleTime: o.ConnMaxIdleTime,
		ConnMaxLifetime: o.ConnMaxLifetime,
		TLSConfig:       o.TLSConfig,
	}, nil
}

// redisKey identifies a Redis deployment and how it is reached: the same
// servers, credentials, database, TLS mode and URL options. Keys embed
// credentials: never log them.
func redisKey(rawURL string, o *redis.UniversalOptions) string {
	tlsName := "-"
	if o.TLSConfig != nil {
		tlsName = "tls:" + o.TLSConfig.ServerName
	}
	query := ""
	if u, err := url.Parse(rawURL); err == nil {
		query = u.Query().Encode()
	}
	return fmt.Sprintf("%q %q %q %d %s %q", o.Addrs, o.Username, o.Password, o.DB, tlsName, query)
}
