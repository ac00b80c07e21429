package notify

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-notify/notify/internal/metrics"
)

// The collectors are created once per process and registered with the
// registry of every config Caddy loads (each gets a new one): streams that
// outlive a reload keep updating the same series.
var (
	notifyMetrics = metrics.New()
	// publishedTotal is notify_publish's, registered only by configs that
	// have one.
	publishedTotal = metrics.NewPublished()
	// publishedOK is publishedTotal's most frequent series, looked up once.
	publishedOK = publishedTotal.WithLabelValues("ok")
)

// registerCollectors adds cs to reg; registering twice is not an error.
func registerCollectors(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if !errors.As(err, &dup) {
				return err
			}
		}
	}
	return nil
}
