package notify

import (
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-notify/notify/internal/redisurl"
	"github.com/caddy-notify/notify/publish"
)

// Defaults of the source settings.
const (
	defaultRedis          = "redis://127.0.0.1:6379/0"
	defaultChannel        = "notifications"
	defaultStreamField    = "data"
	defaultRecipientField = "recipient_id"
	defaultMaxMessageSize = 1 << 20
	// maxMessageSizeLimit bounds max_message_size: Redis itself refuses
	// bulk strings over 512 MiB.
	maxMessageSizeLimit = 512 << 20
)

// Source is where the messages are and how they are read: the settings
// notify and notify_publish share, so that a publisher and its readers
// configured alike meet on the same channels or streams and apply the same
// rules. Both handlers embed it: in JSON its fields are theirs.
type Source struct {
	// Redis, as a URL: redis://[user:password@]host:port[/db] for one
	// server (rediss:// for TLS);
	// redis+sentinel://[user:password@]host:port[,host:port...][/db]?master_name=NAME
	// for a master behind Redis Sentinel (rediss+sentinel:// for TLS; the
	// sentinel_username and sentinel_password options authenticate to the
	// sentinels, user:password@ to the data nodes); or
	// redis+cluster://[user:password@]host:port[,host:port...] for a Redis
	// Cluster (rediss+cluster:// for TLS; the nodes listed are seeds).
	// go-redis's query options (dial_timeout, pool_size...) apply. Global
	// placeholders such as {env.REDIS_URL} are resolved at provision time.
	// Default: redis://127.0.0.1:6379/0.
	Redis string `json:"redis,omitempty"`

	// Pub/sub channel carrying the JSON messages. Default: notifications
	// (unless Stream is set).
	Channel string `json:"channel,omitempty"`

	// Pub/sub mode: sharded pub/sub (SSUBSCRIBE and SPUBLISH), so that in
	// a Redis Cluster a channel's traffic stays on the shard that owns it.
	// Needs Redis 7.
	Sharded bool `json:"sharded,omitempty"`

	// With n > 1, the messages are on <channel>.0 ... <channel>.<n-1>
	// (stream mode: the stream keys <stream>.0 ... <stream>.<n-1>) instead
	// of the channel or stream: a message goes on the partition of each of
	// its recipients, crc32(user id) mod n (see the publish package), and
	// a broadcast on every one; a user's streams read their partition
	// only. Default: 1, at most 1024.
	Partitions int `json:"partitions,omitempty"`

	// Redis Stream holding the messages instead of a pub/sub channel:
	// durable delivery, with each event's entry ID as its SSE id and
	// Last-Event-ID resume. Channel and Stream are alternatives.
	Stream string `json:"stream,omitempty"`

	// Stream mode: the entry field holding the message JSON. Default: data.
	StreamField string `json:"stream_field,omitempty"`

	// JSON field of each message that names its recipients: a string, an
	// integer, or an array of those. Default: recipient_id.
	RecipientField string `json:"recipient_field,omitempty"`

	// JSON field of each message that names groups it is for: a string or
	// an array of strings (group names, 1 to 256 bytes of UTF-8); it goes
	// to every stream whose user is in one of them (see groups_field).
	// notify: default groups when groups_field is set, and only with it.
	// notify_publish: off unless set; set it as on the readers to publish
	// to groups.
	GroupField string `json:"group_field,omitempty"`

	// The largest message (pub/sub) or stream entry (all its fields) that
	// is delivered, in bytes; a bigger one is dropped and counted as
	// too_large without being parsed (notify_publish answers 413). It also
	// sizes every read from a Redis Stream. Default: 1 MiB, at most 512
	// MiB.
	MaxMessageSize int `json:"max_message_size,omitempty"`
}

func (s *Source) applyDefaults() {
	if s.Redis == "" {
		s.Redis = defaultRedis
	}
	if s.Channel == "" && s.Stream == "" {
		s.Channel = defaultChannel
	}
	if s.Stream != "" && s.StreamField == "" {
		s.StreamField = defaultStreamField
	}
	if s.Partitions == 0 {
		s.Partitions = 1
	}
	if s.RecipientField == "" {
		s.RecipientField = defaultRecipientField
	}
	if s.MaxMessageSize == 0 {
		s.MaxMessageSize = defaultMaxMessageSize
	}
}

// check reports the mistakes of the source settings, defaults applied, with
// the same messages for both handlers. atParse is set when the Caddyfile is
// being adapted: values with placeholders are then left for the load.
func (s *Source) check(fail func(format string, args ...any), atParse bool) {
	if !atParse || !hasPlaceholder(s.Redis) {
		if err := checkRedisURL(resolvePlaceholders(s.Redis)); err != nil {
			// The URL may hold a password: the error never echoes it,
			// nor what a placeholder in it resolved to.
			if hasPlaceholder(s.Redis) {
				fail("redis: once placeholders are resolved, %v", err)
			} else {
				fail("redis: %v", err)
			}
		}
	}
	if s.Channel != "" && s.Stream != "" {
		// Defaults only fill Channel when Stream is empty: both were set.
		fail("channel and stream are alternatives: set one")
	}
	if s.Sharded && s.Stream != "" {
		fail("sharded applies to pub/sub mode only: a stream is read with XREAD, which a cluster routes to its shard anyway")
	}
	if s.Partitions < 1 || s.Partitions > publish.MaxPartitions {
		fail("partitions must be a whole number from 1 to %d", publish.MaxPartitions)
	}
	if s.StreamField != "" && s.Stream == "" {
		fail("stream_field applies to stream mode only: set stream, or remove stream_field")
	}
	if s.GroupField != "" && s.GroupField == s.RecipientField {
		fail("group_field and recipient_field must be different fields")
	}
	if s.MaxMessageSize < 1 || s.MaxMessageSize > maxMessageSizeLimit {
		fail("max_message_size must be a size from 1 byte to 512 MiB")
	}
}

// caddyfileSyntax adds the source's subdirectives to a block's syntax.
func (s *Source) caddyfileSyntax(b *blockSyntax) {
	b.single["redis"] = setString(&s.Redis)
	b.single["channel"] = setString(&s.Channel)
	b.single["partitions"] = setPositive(&s.Partitions)
	b.single["stream"] = setString(&s.Stream)
	b.single["stream_field"] = setString(&s.StreamField)
	b.single["recipient_field"] = setString(&s.RecipientField)
	b.single["group_field"] = setString(&s.GroupField)
	b.single["max_message_size"] = setPositiveSize(&s.MaxMessageSize)
	b.flags["sharded"] = &s.Sharded
}

// redisConfig parses the Redis URL with its placeholders resolved.
func (s *Source) redisConfig() (*redisurl.Config, error) {
	return redisurl.Parse(resolvePlaceholders(s.Redis))
}

// publisher describes the source for the publish package.
func (s *Source) publisher() *publish.Publisher {
	return &publish.Publisher{Channel: s.Channel, Stream: s.Stream, StreamField: s.StreamField,
		Partitions: s.Partitions, Sharded: s.Sharded}
}

// checkRedisURL reports whether raw is a Redis URL the module accepts; the
// error says why without quoting it.
func checkRedisURL(raw string) error {
	_, err := redisurl.Parse(raw)
	return err
}

// hasPlaceholder reports whether s holds a placeholder: one to resolve, or,
// after resolvePlaceholders, one that could not be.
func hasPlaceholder(s string) bool { return strings.Contains(s, "{") }

// resolvePlaceholders replaces the global placeholders in s ({env.*} and
// the like); request placeholders, unknown at startup, are left in place.
func resolvePlaceholders(s string) string { return caddy.NewReplacer().ReplaceKnown(s, "") }

// hubKey identifies the readers of a source: the same Redis deployment
// (kind, nodes, credentials, database, TLS mode, URL options), channel or
// stream, partitions and window share one set of subscriptions or stream
// readers. It embeds credentials: never log it.
func hubKey(rc *redisurl.Config, s *Source, history historySettings) string {
	return fmt.Sprintf("%s %q %q %t %d %d %d %d", rc.Key(), s.Channel, s.Stream, s.Sharded, max(s.Partitions, 1),
		history.entries, history.bytes, s.MaxMessageSize)
}

// historySettings are the window's bounds in stream mode (zero otherwise).
type historySettings struct{ entries, bytes int }
