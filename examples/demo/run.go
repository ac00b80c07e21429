package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/redis/go-redis/v9"

	// The notify handler and Caddy's standard modules (reverse_proxy, the
	// Caddyfile adapter, ...), as in a custom Caddy build.
	_ "github.com/caddy-notify/notify"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

const (
	// channel is the pub/sub channel of the demo: the module's default.
	channel = "notifications"

	// defaultAddr is where Caddy serves the demo unless DEMO_ADDR or -addr
	// says otherwise: port 8080 on every interface.
	defaultAddr = ":8080"

	// defaultMiniredisAddr is where the embedded Redis listens unless
	// -miniredis-addr says otherwise. A fixed port keeps the redis-cli line
	// the demo prints (and the README shows) the same from run to run;
	// not Redis's own 6379, so that it never stands in for a Redis of the
	// user's. When it is taken, a free port is used instead.
	defaultMiniredisAddr = "127.0.0.1:6380"
)

// demoConfig is what main gathers from flags and the environment.
type demoConfig struct {
	// Addr is where Caddy serves the demo: ":8080" (every interface),
	// "127.0.0.1:8080", "localhost:8080" or just "8080". Port 0 picks a
	// free port. Default: ":8080".
	Addr string

	// RedisURL names an external Redis (redis:// or rediss://). When empty,
	// the demo starts an embedded miniredis.
	RedisURL string

	// MiniredisAddr is where the embedded Redis listens; port 0 picks a
	// free port. Default: "127.0.0.1:6380", or a free loopback port when
	// something already listens there.
	MiniredisAddr string

	// LogLevel is Caddy's log level (DEBUG, INFO, WARN, ERROR). Empty keeps
	// Caddy's default, INFO.
	LogLevel string
}

// addrs is what a running demo tells its caller.
type addrs struct {
	URL       string // the demo page, e.g. http://localhost:8080/
	Listen    string // where Caddy listens, e.g. ":8080"
	RedisURL  string // the Redis the demo uses; may hold a password
	RedisAddr string // host:port of that Redis
	Embedded  bool   // RedisURL is the embedded miniredis
	AuthURL   string // the demo auth API that Caddy asks about each stream
	Backend   string // the demo's own HTTP server, behind Caddy's reverse_proxy
}

// redisCLI is the start of a redis-cli command line that reaches the demo's
// Redis, as short as redis-cli's defaults (127.0.0.1, 6379) allow. An
// external URL may hold a password, so it is never printed.
func (a addrs) redisCLI() string {
	if !a.Embedded {
		return `redis-cli -u "$REDIS_URL"`
	}
	host, port, err := net.SplitHostPort(a.RedisAddr)
	if err != nil {
		return "redis-cli"
	}
	cli := "redis-cli"
	if host != "127.0.0.1" {
		cli += " -h " + host
	}
	if port != "6379" {
		cli += " -p " + port
	}
	return cli
}

// run starts the demo — Redis (embedded unless cfg.RedisURL is set), the demo
// backend with its auth API, and Caddy with the notify handler in front of
// both — calls ready once everything listens, and stops it all when ctx is
// done. It returns nil after a clean stop. Caddy's state is process-wide:
// only one run may be active in a process.
func run(ctx context.Context, cfg demoConfig, ready func(addrs)) (err error) {
	host, port, err := splitAddr(cmp.Or(cfg.Addr, defaultAddr))
	if err != nil {
		return err
	}
	// Listening once here finds a busy address before anything starts, and
	// turns port 0 into a free port.
	if port, err = probeListen(host, port); err != nil {
		return fmt.Errorf("%w\n(set DEMO_ADDR, or -addr, to another address, e.g. DEMO_ADDR=127.0.0.1:9000 make demo)", err)
	}

	// Everything started is stopped in reverse order, also on a failed start.
	var stops []func() error
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			err = errors.Join(err, stops[i]())
		}
	}()

	var a addrs
	a.RedisURL = cfg.RedisURL
	if a.RedisURL == "" {
		mr, err := startMiniredis(cfg.MiniredisAddr)
		if err != nil {
			return fmt.Errorf("starting the embedded Redis: %w", err)
		}
		stops = append(stops, func() error { mr.Close(); return nil })
		a.RedisURL, a.Embedded = "redis://"+mr.Addr(), true
	}
	opts, err := redis.ParseURL(a.RedisURL)
	if err != nil {
		// The URL may hold a password: never echo it.
		return errors.New("REDIS_URL is not a valid redis:// or rediss:// URL")
	}
	a.RedisAddr = opts.Addr
	rdb := redis.NewClient(opts)
	stops = append(stops, rdb.Close)
	if !a.Embedded {
		// The notify module copes with a Redis that is down, and so does the
		// page: warn, and let the demo show it.
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := rdb.Ping(pctx).Err(); err != nil {
			fmt.Fprintf(os.Stderr, "warning: Redis at %s does not answer yet (%v); streams get 503 until it does\n", a.RedisAddr, err)
		}
		cancel()
	}

	// The demo backend: page, /send and the auth API, on a loopback port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for the demo backend: %w", err)
	}
	a.Backend = ln.Addr().String()
	a.AuthURL = "http://" + a.Backend + authPath
	a.URL = "http://" + net.JoinHostPort(browserHost(host), port) + "/"
	a.Listen = net.JoinHostPort(host, port)
	srv := &http.Server{
		Handler:           newBackend(rdb, a).routes(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stops = append(stops, func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	})

	// Caddy, in this process. Its storage (instance id, locks) goes to a
	// temporary directory rather than the user's ~/.local/share/caddy.
	storage, err := os.MkdirTemp("", "caddy-notify-demo-")
	if err != nil {
		return err
	}
	stops = append(stops, func() error { return os.RemoveAll(storage) })
	caddyfile, err := buildCaddyfile(host, port, storage, a, cfg.LogLevel)
	if err != nil {
		return err
	}
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "demo.Caddyfile"})
	if err != nil {
		return fmt.Errorf("adapting the demo Caddyfile: %w", err)
	}
	for _, w := range warnings {
		fmt.Fprintf(os.Stderr, "caddyfile warning: %s\n", w.String())
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		return fmt.Errorf("starting Caddy: %w", err)
	}
	stops = append(stops, caddy.Stop)

	if ready != nil {
		ready(a)
	}
	<-ctx.Done()
	return nil
}

// startMiniredis starts the embedded Redis on addr, or when addr is empty on
// defaultMiniredisAddr if that is free, else on a free loopback port.
func startMiniredis(addr string) (*miniredis.Miniredis, error) {
	mr := miniredis.NewMiniRedis()
	if addr != "" {
		return mr, mr.StartAddr(addr)
	}
	// Where a program listens on every interface, some systems (macOS, the
	// BSDs) still let a listener bind the loopback address of the same
	// port and take its local clients: ask first whether anyone answers.
	if c, err := net.DialTimeout("tcp", defaultMiniredisAddr, 500*time.Millisecond); err == nil {
		c.Close()
	} else if err := mr.StartAddr(defaultMiniredisAddr); err == nil {
		return mr, nil
	}
	fmt.Fprintf(os.Stderr, "note: %s is in use, so the embedded Redis listens on a free port (see the redis-cli lines below)\n", defaultMiniredisAddr)
	return mr, mr.StartAddr("127.0.0.1:0")
}

// buildCaddyfile returns the demo's Caddyfile: the notify handler on /events,
// everything else proxied to the demo backend.
func buildCaddyfile(host, port, storage string, a addrs, logLevel string) (string, error) {
	redisURL, err := caddyfileToken(a.RedisURL)
	if err != nil {
		return "", fmt.Errorf("REDIS_URL cannot be used in a Caddyfile: %w", err)
	}
	authURL, err := caddyfileToken(a.AuthURL)
	if err != nil {
		return "", err
	}
	storageDir, err := caddyfileToken(storage)
	if err != nil {
		return "", fmt.Errorf("temporary directory %q cannot be used in a Caddyfile: %w", storage, err)
	}
	var b strings.Builder
	b.WriteString("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tgrace_period 2s\n")
	// Plain HTTP: HTTP/2 and HTTP/3 need TLS, and Caddy warns about them.
	b.WriteString("\tservers {\n\t\tprotocols h1\n\t}\n")
	fmt.Fprintf(&b, "\tstorage file_system {\n\t\troot %s\n\t}\n", storageDir)
	if logLevel != "" {
		if !isWord(logLevel) {
			return "", fmt.Errorf("log level %q is not a single word", logLevel)
		}
		fmt.Fprintf(&b, "\tlog {\n\t\tlevel %s\n\t}\n", logLevel)
	}
	b.WriteString("}\n\n")
	// No host in the site address: the demo answers whatever name reaches
	// it (localhost, 127.0.0.1, a LAN address); bind limits where it listens.
	fmt.Fprintf(&b, "http://:%s {\n", port)
	if host != "" {
		fmt.Fprintf(&b, "\tbind %s\n", host)
	}
	fmt.Fprintf(&b, `	notify /events {
		redis %s
		channel %s
		auth_url %s
		token_cookie %s
		token_query access_token
		broadcast
	}
	reverse_proxy %s
}
`, redisURL, channel, authURL, tokenCookie, a.Backend)
	return b.String(), nil
}

// caddyfileToken quotes s as one raw Caddyfile token. Backtick tokens take
// everything literally except {$ENV} references, which are expanded before
// tokens are read.
func caddyfileToken(s string) (string, error) {
	if strings.ContainsAny(s, "`\r\n") || strings.Contains(s, "{$") {
		return "", errors.New("it contains a backtick, a line break or {$")
	}
	return "`" + s + "`", nil
}

func isWord(s string) bool {
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return s != ""
}

// splitAddr accepts "host:port", ":port" and "port".
func splitAddr(s string) (host, port string, err error) {
	if !strings.Contains(s, ":") {
		s = ":" + s
	}
	host, port, err = net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("address %q: %w", s, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return "", "", fmt.Errorf("address %q: port must be a number from 0 to 65535", s)
	}
	if strings.ContainsAny(host, " \t{}\"`") {
		return "", "", fmt.Errorf("address %q: invalid host", s)
	}
	return host, port, nil
}

// probeListen listens on host:port and stops at once, returning the port it
// got: a free one for port 0. Another process could take the port before
// Caddy does; for a demo and its test that is good enough.
func probeListen(host, port string) (string, error) {
	addr := net.JoinHostPort(host, port)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	defer l.Close()
	_, port, err = net.SplitHostPort(l.Addr().String())
	return port, err
}

// browserHost is the host to put in the printed URL for a bind host.
func browserHost(host string) string {
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "localhost"
	}
	return host
}

// redacted is u without its password, for printing.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}
