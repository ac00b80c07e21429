package notify

import (
	"errors"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-notify/notify/internal/control"
	"github.com/caddy-notify/notify/internal/gateway"
)

// A handler's gateway (its engine: the streams and what they hold) is
// pooled by the handler's identity, the settings that decide what its
// streams receive and who their users are (see Handler.identity). A reload
// provisions the new config before it stops the old one: a handler of the
// new config with the same identity takes the old one's gateway, and its
// streams stay open under the new config's other settings, which apply to
// them from then on. When no config holds a gateway any more, it ends its
// streams spread over reload_drain (a reload) or at once (a stop), and only
// then gives back the hubs, control channel and presence keeper it holds.

// gateways holds one gateway per handler identity and ordinal.
var gateways = newPool[*pooledGateway]()

// ordinals numbers the handlers of one config that have the same identity,
// in the order Caddy provisions them (the order of the routes): the nth
// such handler of a new config takes over the gateway of the nth of the
// config it replaces, and two of one config never share a gateway, nor its
// limits and settings.
var ordinals = ordinalSet{byConfig: map[<-chan struct{}]map[string]int{}}

// ordinalSet counts, per config, the handlers of each identity.
type ordinalSet struct {
	mu       sync.Mutex
	byConfig map[<-chan struct{}]map[string]int
}

// next returns the ordinal of a new handler of config with identity.
func (o *ordinalSet) next(config <-chan struct{}, identity string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.byConfig[config]
	if m == nil {
		m = map[string]int{}
		o.byConfig[config] = m
	}
	n := m[identity]
	m[identity]++
	return n
}

// forget drops config's counts once its handlers are cleaned up.
func (o *ordinalSet) forget(config <-chan struct{}) {
	o.mu.Lock()
	delete(o.byConfig, config)
	o.mu.Unlock()
}

// draining holds the gateways that end their streams after a reload, so
// that a stop of the process ends those at once too.
var draining = drainingSet{set: map[*pooledGateway]struct{}{}}

// pooledGateway is a gateway, the pooled resources it holds, and the
// configs whose handlers use it, each with its settings.
type pooledGateway struct {
	gw          *gateway.Gateway
	hubKey      string
	presenceKey string // "" when presence is off
	controlKey  string // "" when control_channel is off
	control     *control.Channel

	mu       sync.Mutex
	attached []*attachment // oldest first: the newest's settings apply
}

// attachment is one handler's use of a gateway.
type attachment struct {
	config   <-chan struct{} // the handler's config, told apart from others (Handler.config)
	settings gateway.Settings
}

// attach records that a handler of config uses the gateway with settings,
// which apply from now on.
func (p *pooledGateway) attach(config <-chan struct{}, settings gateway.Settings) *attachment {
	a := &attachment{config: config, settings: settings}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attached = append(p.attached, a)
	p.gw.Apply(settings)
	return a
}

// detach undoes attach: the settings of the newest attachment left apply
// (the old config's, when a new one failed to load). kept reports that
// a's config no longer uses the gateway (this was its last handler to) and
// another config does: the gateway's streams outlive a's config.
func (p *pooledGateway) detach(a *attachment) (kept bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attached = slices.DeleteFunc(p.attached, func(b *attachment) bool { return b == a })
	if n := len(p.attached); n > 0 {
		p.gw.Apply(p.attached[n-1].settings)
	}
	same := slices.ContainsFunc(p.attached, func(b *attachment) bool { return b.config == a.config })
	return !same && len(p.attached) > 0
}

// Destruct ends the gateway's streams, spread over reload_drain (at once
// when the process stopped them already), and returns at once; what the
// gateway holds is given back once the last stream has ended.
func (p *pooledGateway) Destruct() error {
	ended, n := p.gw.Drain()
	notifyMetrics.StreamsDrained.Add(float64(n))
	draining.add(p)
	go func() {
		<-ended
		draining.remove(p)
		if err := p.release(); err != nil {
			caddy.Log().Named("notify").Error("releasing a drained handler's resources", zap.Error(err))
		}
	}()
	return nil
}

// release detaches the gateway from its hubs and gives back what it holds.
func (p *pooledGateway) release() error {
	var errs []error
	if p.control != nil {
		p.control.Remove(p.gw)
		errs = append(errs, controlChannels.release(p.controlKey))
	}
	p.gw.Close()
	errs = append(errs, hubSets.release(p.hubKey))
	if p.presenceKey != "" {
		errs = append(errs, presenceKeepers.release(p.presenceKey))
	}
	return errors.Join(errs...)
}

// drainingSet is the gateways ending their streams after a reload.
type drainingSet struct {
	mu  sync.Mutex
	set map[*pooledGateway]struct{}
}

func (d *drainingSet) add(p *pooledGateway) {
	d.mu.Lock()
	d.set[p] = struct{}{}
	d.mu.Unlock()
}

func (d *drainingSet) remove(p *pooledGateway) {
	d.mu.Lock()
	delete(d.set, p)
	d.mu.Unlock()
}

// endAll ends the streams of every draining gateway at once: the process
// is stopping.
func (d *drainingSet) endAll() {
	d.mu.Lock()
	all := make([]*pooledGateway, 0, len(d.set))
	for p := range d.set {
		all = append(all, p)
	}
	d.mu.Unlock()
	for _, p := range all {
		p.gw.EndStreams()
	}
}
