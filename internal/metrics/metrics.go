// Package metrics holds the engine's Prometheus collectors. Their names
// are caddy_notify_*: they are registered with Caddy's metrics registry.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// CanceledOutcome is the stream_requests_total outcome of a request whose
// client left before its stream opened.
const CanceledOutcome = "canceled"

// Set is the module's collectors. The root package creates one per process
// and registers it with the registry of every config Caddy loads, so that
// streams that outlive a reload keep updating the same series. No label
// ever takes a user id, token or channel.
type Set struct {
	StreamsOpen         prometheus.Gauge
	StreamsOpened       *prometheus.CounterVec
	MessagesReceived    prometheus.Counter
	Deliveries          prometheus.Counter
	Drops               *prometheus.CounterVec
	AuthDuration        *prometheus.HistogramVec
	AuthInFlight        prometheus.Gauge
	AuthAbandoned       prometheus.Counter
	RedisSubscriptions  *prometheus.GaugeVec
	PartitionsDown      *prometheus.GaugeVec
	RedisReconnects     prometheus.Counter
	Replayed            *prometheus.CounterVec
	ReplayRedisCommands prometheus.Counter
	Resets              *prometheus.CounterVec
	Revoked             *prometheus.CounterVec
	ReauthChecks        *prometheus.CounterVec
	PresenceCommands    prometheus.Counter
	ControlMessages     *prometheus.CounterVec
	StreamsKept         prometheus.Counter
	StreamsDrained      prometheus.Counter
}

// New creates the collectors of the notify handler.
func New() *Set {
	const ns, sub = "caddy", "notify"
	return &Set{
		StreamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "streams_open",
			Help: "Event streams currently open.",
		}),
		StreamsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "stream_requests_total",
			Help: "Stream requests by outcome: ok, the HTTP status of the refusal, or canceled (the client left before its stream opened).",
		}, []string{"outcome"}),
		MessagesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "messages_received_total",
			Help: "Messages received from Redis.",
		}),
		Deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "deliveries_total",
			Help: "Events queued to streams (one message to three streams counts three).",
		}),
		Drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dropped_total",
			Help: "Messages or deliveries dropped, by reason: malformed, no_recipient, invalid_recipient, invalid_group, too_large, slow_client, wrong_partition.",
		}, []string{"reason"}),
		AuthDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "auth_duration_seconds",
			Help:    "Auth API call latency by result: ok, denied, error, timeout.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
		AuthInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "auth_in_flight",
			Help: "Auth API requests sent and not yet answered (at most auth_concurrency per handler).",
		}),
		AuthAbandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "auth_abandoned_total",
			Help: "Auth checks never sent because every client waiting for them had left.",
		}),
		RedisSubscriptions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "redis_subscriptions",
			Help: "Redis subscriptions by state: up or down (reconnecting).",
		}, []string{"state"}),
		// The partition number is bounded (at most 1024) and tells which
		// users a partial outage affects; a partition of different
		// handlers shares one series.
		PartitionsDown: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "redis_partitions_down",
			Help: "Subscriptions or stream readers of partitioned handlers that are down, by partition number.",
		}, []string{"partition"}),
		RedisReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "redis_reconnects_total",
			Help: "Redis subscriptions or stream readers re-established after being lost.",
		}),
		Replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "replayed_events_total",
			Help: "Events replayed to resuming streams (stream mode), by source: memory or redis.",
		}, []string{"source"}),
		ReplayRedisCommands: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "replay_redis_commands_total",
			Help: "Redis commands issued to resume streams older than the in-process window.",
		}),
		Resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "resets_total",
			Help: "Reset events sent to resuming streams, by reason: history_truncated, unknown_last_event_id, replay_limit.",
		}, []string{"reason"}),
		Revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "revoked_total",
			Help: "Streams ended with a revoked event, by reason: unauthorized, forbidden, user_changed, disconnected.",
		}, []string{"reason"}),
		ReauthChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "reauth_checks_total",
			Help: "Checks of open streams' credentials (reauth), by result: ok, denied, error, timeout.",
		}, []string{"result"}),
		ControlMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "control_messages_total",
			Help: "Messages read from the control channel, by outcome: disconnect; invalid_recipient or invalid_group when it named invalid elements (the rest applied); or why one was dropped whole: malformed, no_recipient, too_large.",
		}, []string{"outcome"}),
		PresenceCommands: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "presence_commands_total",
			Help: "Redis commands sent to keep presence (ZADD batches and prunes).",
		}),
		StreamsKept: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "streams_kept_total",
			Help: "Streams a config reload kept open (their handler's identity was unchanged), counted at each reload.",
		}),
		StreamsDrained: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "streams_drained_total",
			Help: "Streams a config reload ended, spread over reload_drain (their handler changed or is gone).",
		}),
	}
}

// Collectors lists the collectors, for registration.
func (m *Set) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.StreamsOpen, m.StreamsOpened, m.MessagesReceived, m.Deliveries,
		m.Drops, m.AuthDuration, m.AuthInFlight, m.AuthAbandoned,
		m.RedisSubscriptions, m.PartitionsDown, m.RedisReconnects,
		m.Replayed, m.ReplayRedisCommands, m.Resets, m.Revoked, m.ReauthChecks, m.PresenceCommands, m.ControlMessages,
		m.StreamsKept, m.StreamsDrained,
	}
}

// NewPublished creates notify_publish's collector: its requests by outcome,
// ok or the status of the refusal. Apart from Set: a config with
// notify_publish alone registers only it.
func NewPublished() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "notify", Name: "published_total",
		Help: "notify_publish requests by outcome: ok, or the HTTP status of the refusal.",
	}, []string{"outcome"})
}
