// Package redisurl reads the Redis URLs the module accepts (one server,
// Sentinel, Cluster) into go-redis options, never quoting a URL, which may
// hold passwords, in its errors.
package redisurl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// kind is the shape of a Redis deployment.
type kind int

const (
	kindSingle   kind = iota // redis:// or rediss://: one server
	kindSentinel             // redis+sentinel://: a master found through sentinels
	kindCluster              // redis+cluster://: a Redis Cluster, from seed nodes
)

// Config is a parsed redis URL: exactly one of the option sets is set,
// by kind.
type Config struct {
	kind     kind
	single   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
	query    string // the URL's query, normalized: part of the hub key
}

// errURL and its wrappings never quote the URL: it may hold passwords.
var errURL = errors.New("not a valid redis://, rediss://, redis+sentinel:// or redis+cluster:// URL")

// Parse parses a Redis URL, query options included (dial_timeout,
// pool_size, max_retries, ...):
//
//	redis://[user:password@]host:port[/db]             one server (rediss:// for TLS)
//	redis+sentinel://[user:password@]host:port[,host:port...][/db]?master_name=NAME
//	redis+cluster://[user:password@]host:port[,host:port...]
//
// For Sentinel, user:password@ authenticate to the data nodes, as in the
// other forms, and the sentinel_username and sentinel_password query
// options to the sentinels. The listed cluster nodes are seeds: the rest is
// discovered. The returned errors say what is wrong without quoting the URL.
func Parse(rawURL string) (*Config, error) {
	scheme, rest, _ := strings.Cut(rawURL, "://")
	base, form, multi := strings.Cut(scheme, "+")
	if !multi {
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, errURL
		}
		defaultClientName(&o.ClientName)
		c := &Config{kind: kindSingle, single: o}
		if u, err := url.Parse(rawURL); err == nil {
			c.query = u.Query().Encode()
		}
		return c, nil
	}
	if (base != "redis" && base != "rediss") || (form != "sentinel" && form != "cluster") {
		return nil, errURL
	}
	// The host list is not a URL authority that net/url accepts: take it
	// apart here, and give go-redis one host and the others as addr=.
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	var user *url.Userinfo
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		u, err := url.Parse("redis://" + authority[:at+1] + "h")
		if err != nil {
			return nil, fmt.Errorf("%w: malformed user or password", errURL)
		}
		user, authority = u.User, authority[at+1:]
	}
	hosts := strings.Split(authority, ",")
	for _, h := range hosts {
		if host, port, err := net.SplitHostPort(h); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("%w: every %s node must be written host:port", errURL, form)
		}
	}
	u, err := url.Parse(base + "://" + hosts[0] + tail)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed path or query", errURL)
	}
	q := u.Query()
	c := &Config{query: q.Encode()}
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	if form == "cluster" {
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return nil, fmt.Errorf("%w: a Redis Cluster has database 0 only", errURL)
		}
		u.Path, u.User, u.RawQuery = "", user, q.Encode()
		o, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("%w: %s", errURL, optionProblem(err))
		}
		defaultClientName(&o.ClientName)
		c.kind, c.cluster = kindCluster, o
		return c, nil
	}
	// go-redis reads the sentinels' credentials from the userinfo and the
	// data nodes' from the query: swap them into that shape.
	if q.Get("master_name") == "" {
		return nil, fmt.Errorf("%w: redis+sentinel:// needs ?master_name=", errURL)
	}
	if q.Has("username") || q.Has("password") {
		return nil, fmt.Errorf("%w: write the data nodes' user:password@ before the hosts", errURL)
	}
	if user != nil {
		q.Set("username", user.Username())
		if p, ok := user.Password(); ok {
			q.Set("password", p)
		}
	}
	u.User = nil
	if su, sp := q.Get("sentinel_username"), q.Get("sentinel_password"); su != "" || sp != "" {
		u.User = url.UserPassword(su, sp)
	}
	q.Del("sentinel_username")
	q.Del("sentinel_password")
	u.RawQuery = q.Encode()
	o, err := redis.ParseFailoverURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("%w: %s", errURL, optionProblem(err))
	}
	defaultClientName(&o.ClientName)
	c.kind, c.failover = kindSentinel, o
	return c, nil
}

// defaultClientName names the module's connections in CLIENT LIST, unless
// the URL's client_name option does.
func defaultClientName(name *string) {
	if *name == "" {
		*name = "caddy-notify"
	}
}

// optionProblem turns a go-redis URL error into words that cannot hold a
// credential: go-redis quotes unknown option names and bad values, and a
// value could be a password.
func optionProblem(err error) string {
	switch msg := err.Error(); {
	case strings.Contains(msg, "unexpected option"):
		return "an unknown query option"
	case strings.Contains(msg, "database"):
		return "the database must be a number"
	default:
		return "a query option has an invalid value"
	}
}

// NewClient builds the go-redis client for c; it does not dial.
func (c *Config) NewClient() redis.UniversalClient {
	switch c.kind {
	case kindSentinel:
		return redis.NewFailoverClient(c.failover)
	case kindCluster:
		// A cluster URL with one seed is still a cluster: a
		// UniversalClient would make a plain client of it.
		return redis.NewClusterClient(c.cluster)
	}
	return redis.NewClient(c.single)
}

// SetMinPool raises the client's connection pool (per node in a cluster)
// to at least n connections, for the readers that each hold one while
// they block in XREAD. It only raises a limit: connections are still
// opened on demand.
func (c *Config) SetMinPool(n int) {
	switch {
	case c.single != nil:
		c.single.PoolSize = max(c.single.PoolSize, n)
	case c.failover != nil:
		c.failover.PoolSize = max(c.failover.PoolSize, n)
	case c.cluster != nil:
		c.cluster.PoolSize = max(c.cluster.PoolSize, n)
	}
}

// Key identifies a Redis deployment and how it is reached: its kind, nodes,
// every credential, database, TLS mode and URL options. It embeds
// credentials: never log it.
func (c *Config) Key() string {
	var addrs []string
	var user, pass, sUser, sPass, master, tlsName string
	db := 0
	tlsName = "-"
	switch c.kind {
	case kindSingle:
		o := c.single
		addrs, user, pass, db = []string{o.Network + ":" + o.Addr}, o.Username, o.Password, o.DB
		if o.TLSConfig != nil {
			tlsName = "tls:" + o.TLSConfig.ServerName
		}
	case kindSentinel:
		o := c.failover
		addrs, user, pass, db = o.SentinelAddrs, o.Username, o.Password, o.DB
		sUser, sPass, master = o.SentinelUsername, o.SentinelPassword, o.MasterName
		if o.TLSConfig != nil {
			tlsName = "tls:" + o.TLSConfig.ServerName
		}
	case kindCluster:
		o := c.cluster
		addrs, user, pass = o.Addrs, o.Username, o.Password
		if o.TLSConfig != nil {
			tlsName = "tls:" + o.TLSConfig.ServerName
		}
	}
	return fmt.Sprintf("%d %q %q %q %q %q %q %d %s %q", c.kind, addrs, user, pass, sUser, sPass, master, db, tlsName, c.query)
}
