package notify

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are created once per process and registered with the registry of
// every loaded config: streams that outlive a reload keep updating the same
// collectors. No label ever takes a user id, token or channel.
var metrics = newMetrics()

type notifyMetrics struct {
	streamsOpen        prometheus.Gauge
	streamsOpened      *prometheus.CounterVec
	messagesReceived   prometheus.Counter
	deliveries         prometheus.Counter
	drops              *prometheus.CounterVec
	authDuration       *prometheus.HistogramVec
	redisSubscriptions *prometheus.GaugeVec
	redisReconnects    prometheus.Counter
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
			Help: "Stream requests by outcome: ok or the HTTP status of the refusal.",
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
			Help: "Messages or deliveries dropped, by reason: malformed, no_recipient, invalid_recipient, slow_client.",
		}, []string{"reason"}),
		authDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "auth_duration_seconds",
			Help:    "Auth API call latency by result: ok, denied, error, timeout.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
		redisSubscriptions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "redis_subscriptions",
			Help: "Redis subscriptions by state: up or down (reconnecting).",
		}, []string{"state"}),
		redisReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "redis_reconnects_total",
			Help: "Redis subscriptions re-established after being lost.",
		}),
	}
}

func (m *notifyMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.streamsOpen, m.streamsOpened, m.messagesReceived, m.deliveries,
		m.drops, m.authDuration, m.redisSubscriptions, m.redisReconnects,
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
