package notify

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// outcomeCanceled is the stream_requests_total outcome of a request whose
// client left before its stream opened.
const outcomeCanceled = "canceled"

// metrics are created once per process and registered with the registry of
// every loaded config: streams that outlive a reload keep updating the same
// collectors. No label ever takes a user id, token or channel.
var metrics = newMetrics()

type notifyMetrics struct {
	streamsOpen         prometheus.Gauge
	streamsOpened       *prometheus.CounterVec
	messagesReceived    prometheus.Counter
	deliveries          prometheus.Counter
	drops               *prometheus.CounterVec
	authDuration        *prometheus.HistogramVec
	authInFlight        prometheus.Gauge
	authAbandoned       prometheus.Counter
	redisSubscriptions  *prometheus.GaugeVec
	partitionsDown      *prometheus.GaugeVec
	redisReconnects     prometheus.Counter
	replayed            *prometheus.CounterVec
	replayRedisCommands prometheus.Counter
	resets              *prometheus.CounterVec
	revoked             *prometheus.CounterVec
	reauthChecks        *prometheus.CounterVec
	presenceCommands    prometheus.Counter
	controlMessages     *prometheus.CounterVec
}

func newMetrics() *notifyMetrics {
	const ns, sub = "caddy", "notify"
	return &notifyMetrics{
		streamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "streams_open",
			Help: "Event streams currently open.",
		}),
		streamsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "stream_requests_total",
			Help: "Stream requests by outcome: ok, the HTTP status of the refusal, or canceled (the client left before its stream opened).",
		}, []string{"outcome"}),
		messagesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "messages_received_total",
			Help: "Messages received from Redis.",
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "deliveries_total",
			Help: "Events queued to streams (one message to three streams counts three).",
		}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dropped_total",
			Help: "Messages or deliveries dropped, by reason: malformed, no_recipient, invalid_recipient, too_large, slow_client, wrong_partition.",
		}, []string{"reason"}),
		authDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "auth_duration_seconds",
			Help:    "Auth API call latency by result: ok, denied, error, timeout.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
		authInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "auth_in_flight",
			Help: "Auth API requests sent and not yet answered (at most auth_concurrency per handler).",
		}),
		authAbandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "auth_abandoned_total",
			Help: "Auth checks never sent because every client waiting for them had left.",
		}),
		redisSubscriptions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "redis_subscriptions",
			Help: "Redis subscriptions by state: up or down (reconnecting).",
		}, []string{"state"}),
		// The partition number is bounded (at most 1024) and tells which
		// users a partial outage affects; a partition of different
		// handlers shares one series.
		partitionsDown: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "redis_partitions_down",
			Help: "Subscriptions or stream readers of partitioned handlers that are down, by partition number.",
		}, []string{"partition"}),
		redisReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "redis_reconnects_total",
			Help: "Redis subscriptions or stream readers re-established after being lost.",
		}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "replayed_events_total",
			Help: "Events replayed to resuming streams (stream mode), by source: memory or redis.",
		}, []string{"source"}),
		replayRedisCommands: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "replay_redis_commands_total",
			Help: "Redis commands issued to resume streams older than the in-process window.",
		}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "resets_total",
			Help: "Reset events sent to resuming streams, by reason: history_truncated, unknown_last_event_id, replay_limit.",
		}, []string{"reason"}),
		revoked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "revoked_total",
			Help: "Streams ended with a revoked event, by reason: unauthorized, forbidden, user_changed, disconnected.",
		}, []string{"reason"}),
		reauthChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "reauth_checks_total",
			Help: "Checks of open streams' credentials (reauth), by result: ok, denied, error, timeout.",
		}, []string{"result"}),
		controlMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "control_messages_total",
			Help: "Messages read from the control channel, by outcome: disconnect, or why one was dropped: malformed, no_recipient, invalid_recipient, too_large.",
		}, []string{"outcome"}),
		presenceCommands: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "presence_commands_total",
			Help: "Redis commands sent to keep presence (ZADD batches and prunes).",
		}),
	}
}

func (m *notifyMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.streamsOpen, m.streamsOpened, m.messagesReceived, m.deliveries,
		m.drops, m.authDuration, m.authInFlight, m.authAbandoned,
		m.redisSubscriptions, m.partitionsDown, m.redisReconnects,
		m.replayed, m.replayRedisCommands, m.resets, m.revoked, m.reauthChecks, m.presenceCommands, m.controlMessages,
	}
}

// register adds the collectors to reg; registering twice is not an error.
func (m *notifyMetrics) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if !errors.As(err, &dup) {
				return err
			}
		}
	}
	return nil
}

// publishedTotal counts notify_publish's requests by outcome: ok, or the
// status of the refusal (400, 405, 413, 415, 503). Apart from
// notifyMetrics: a config with notify_publish alone registers only it.
var publishedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddy", Subsystem: "notify", Name: "published_total",
	Help: "notify_publish requests by outcome: ok, or the HTTP status of the refusal.",
}, []string{"outcome"})

// publishedOK is publishedTotal's most frequent series, looked up once.
var publishedOK = publishedTotal.WithLabelValues("ok")

// registerPublishMetrics adds notify_publish's collector to reg;
// registering twice is not an error.
func registerPublishMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	var dup prometheus.AlreadyRegisteredError
	if err := reg.Register(publishedTotal); err != nil && !errors.As(err, &dup) {
		return err
	}
	return nil
}
