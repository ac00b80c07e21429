package hub

import (
	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/sse"
)

// Preamble is what a stream writes after its retry field and before its
// live events.
type Preamble struct {
	position  *sse.Frame   // a new stream-mode stream's starting point, or nil
	reset     *sse.Frame   // sent first when history was cut, or nil
	reason    string       // the reset's reason
	replay    []*sse.Frame // missed events, oldest first
	fromRedis int          // how many of replay came from Redis rather than memory
	written   func()       // if not nil, called once the preamble is written (or failed to be)
}

// Frames returns the preamble's frames in order, after first.
func (p Preamble) Frames(first *sse.Frame) []*sse.Frame {
	out := make([]*sse.Frame, 0, 3+len(p.replay))
	out = append(out, first)
	if p.position != nil {
		out = append(out, p.position)
	}
	if p.reset != nil {
		out = append(out, p.reset)
	}
	return append(out, p.replay...)
}

// Written returns what must be called once the preamble is written, or
// failed to be: it gives back the replay slot a resume from Redis holds.
// nil when there is nothing to call. The caller keeps the func alone, not
// the preamble, whose replay would otherwise stay reachable as long as the
// stream lives.
func (p Preamble) Written() func() { return p.written }

// Record counts a resume in the metrics and the debug log.
func (p Preamble) Record(l *zap.Logger, m *metrics.Set) {
	fromMemory := len(p.replay) - p.fromRedis
	m.Replayed.WithLabelValues("memory").Add(float64(fromMemory))
	m.Replayed.WithLabelValues("redis").Add(float64(p.fromRedis))
	if p.reason != "" {
		m.Resets.WithLabelValues(p.reason).Inc()
	}
	if c := l.Check(zap.DebugLevel, "stream resumed"); c != nil {
		c.Write(zap.Int("replayed_memory", fromMemory), zap.Int("replayed_redis", p.fromRedis),
			zap.String("reset", p.reason))
	}
}
