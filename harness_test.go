package notify

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-notify/notify/internal/testkit"
)

// loadCaddyfile adapts a Caddyfile and runs it in this process, replacing any
// config a previous call loaded. Caddy is stopped when the test ends.
func loadCaddyfile(t testing.TB, caddyfile string) {
	t.Helper()
	if err := tryLoadCaddyfile(caddyfile); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
}

// tryLoadCaddyfile is loadCaddyfile without the test: it reports errors, and
// refuses a config the adapter warned about (a test that expects a warning
// adapts the Caddyfile itself).
func tryLoadCaddyfile(caddyfile string) error {
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return fmt.Errorf("adapting: %w", err)
	}
	if len(warnings) > 0 {
		msgs := make([]string, len(warnings))
		for i, w := range warnings {
			msgs[i] = w.String()
		}
		return fmt.Errorf("adapter warnings:\n%s\nin:\n%s", strings.Join(msgs, "\n"), caddyfile)
	}
	return caddy.Load(cfg, true)
}

// runningHandlers returns the notify handlers of the running config, in
// route order, for a test to reach their state.
func runningHandlers(t testing.TB) []*Handler {
	t.Helper()
	return runningOf[*Handler](t)
}

// runningOf returns the handlers of type T of the running config, in route
// order, subroutes included.
func runningOf[T caddyhttp.MiddlewareHandler](t testing.TB) []T {
	t.Helper()
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		t.Fatalf("the running http app: %v", err)
	}
	var hs []T
	var walk func(caddyhttp.RouteList)
	walk = func(routes caddyhttp.RouteList) {
		for _, r := range routes {
			for _, mh := range r.Handlers {
				switch h := mh.(type) {
				case T:
					hs = append(hs, h)
				case *caddyhttp.Subroute:
					walk(h.Routes)
				}
			}
		}
	}
	for _, srv := range app.(*caddyhttp.App).Servers {
		walk(srv.Routes)
	}
	return hs
}

// caddyConfig is a Caddyfile with one HTTP site on 127.0.0.1 and the global
// options every test needs. routes, global and log are written as they stand
// in the file, indented with tabs; leading newlines and trailing blanks are
// dropped. In them, {redis} stands for the Redis server's URL, {auth} for the
// auth API's, and {name} for vars[name].
type caddyConfig struct {
	redis  *testkit.Redis // nil: vars["redis"] gives {redis}
	auth   *testkit.AuthAPI
	routes string            // the site block's body
	global string            // further global options
	log    string            // the global log block's body; default: level ERROR
	vars   map[string]string // further placeholders
	// eternalGrace leaves grace_period unset: Caddy's default, which waits
	// for open streams forever.
	eternalGrace bool
	// autoHTTPS leaves automatic HTTPS on (it does nothing for an http://
	// site, but logs the whole adjusted config at debug level).
	autoHTTPS bool
	port      int // the site's port; load picks a free one when 0
}

// serve runs routes as a Caddy site on a free port, as caddyConfig describes,
// and returns its base URL.
func serve(t testing.TB, rs *testkit.Redis, auth *testkit.AuthAPI, routes string) string {
	t.Helper()
	c := &caddyConfig{redis: rs, auth: auth, routes: routes}
	return c.load(t)
}

// load runs c in this process, replacing any config loaded before, and
// returns the site's base URL. Caddy is stopped when the test ends.
func (c *caddyConfig) load(t testing.TB) string {
	t.Helper()
	if c.port == 0 {
		c.port = testkit.FreePort(t)
	}
	loadCaddyfile(t, c.caddyfile())
	return c.base()
}

// reload replaces the running config with c, as a config reload does.
func (c *caddyConfig) reload() error { return tryLoadCaddyfile(c.caddyfile()) }

func (c *caddyConfig) base() string { return fmt.Sprintf("http://127.0.0.1:%d", c.port) }

func (c *caddyConfig) caddyfile() string {
	vars := []string{"{auth}", c.auth.URL}
	if c.redis != nil { // else vars names {redis}, e.g. a cluster's URL
		vars = append(vars, "{redis}", c.redis.URL())
	}
	for name, v := range c.vars {
		vars = append(vars, "{"+name+"}", v)
	}
	expand := strings.NewReplacer(vars...).Replace
	var b strings.Builder
	b.WriteString("{\n\tadmin off\n\tpersist_config off\n")
	if !c.autoHTTPS {
		b.WriteString("\tauto_https off\n")
	}
	if !c.eternalGrace {
		b.WriteString("\tgrace_period 5s\n")
	}
	log := "\t\tlevel ERROR"
	if c.log != "" {
		log = block(c.log)
	}
	fmt.Fprintf(&b, "\tlog {\n%s\n\t}\n", expand(log))
	if c.global != "" {
		fmt.Fprintf(&b, "%s\n", expand(block(c.global)))
	}
	fmt.Fprintf(&b, "}\nhttp://127.0.0.1:%d {\n%s\n}\n", c.port, expand(block(c.routes)))
	return b.String()
}

// block trims a Caddyfile fragment written in a raw string literal.
func block(s string) string { return strings.TrimRight(strings.TrimLeft(s, "\n"), " \t\n") }

// jsonBody decodes a JSON error body.
func jsonBody(t testing.TB, r io.Reader) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		t.Fatalf("decoding JSON body: %v", err)
	}
	return m
}

// readersUp reports whether every hub of the process reads its source: no
// subscription or stream reader is counted down.
func readersUp() bool {
	return testutil.ToFloat64(notifyMetrics.RedisSubscriptions.WithLabelValues("down")) == 0
}
