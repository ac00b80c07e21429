// Command demo runs the notify module end to end in one process: Redis (an
// embedded miniredis unless REDIS_URL is set), a demo auth API and web page,
// and Caddy with the notify handler in front of them.
//
// It lives in the examples module (examples/go.mod), so run it from there,
// or with `make demo` from the repository root:
//
//	cd examples && go run ./demo                # http://localhost:8080
//	DEMO_ADDR=:9000 go run ./demo
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./demo
//
// Ctrl-C (SIGINT) or SIGTERM stops it; after a clean stop it exits 0.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var cfg demoConfig
	flag.StringVar(&cfg.Addr, "addr", cmp.Or(os.Getenv("DEMO_ADDR"), defaultAddr),
		`address Caddy serves the demo on, e.g. ":8080" or "127.0.0.1:9000" (env DEMO_ADDR)`)
	flag.StringVar(&cfg.RedisURL, "redis", os.Getenv("REDIS_URL"),
		"Redis URL; empty starts an embedded miniredis (env REDIS_URL)")
	flag.StringVar(&cfg.MiniredisAddr, "miniredis-addr", "",
		`listen address of the embedded miniredis (default "`+defaultMiniredisAddr+`", or a free port when that is in use)`)
	flag.StringVar(&cfg.LogLevel, "log-level", "WARN",
		"Caddy's log level: DEBUG, INFO, WARN or ERROR")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected argument %q\n", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()

	if err := run(ctx, cfg, printBanner); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "\ndemo stopped")
}

func printBanner(a addrs) { writeBanner(os.Stdout, a) }

// writeBanner tells what runs where, how to change the address, and how to
// publish from a shell.
func writeBanner(w io.Writer, a addrs) {
	redis := "embedded miniredis at " + a.RedisAddr + " (set REDIS_URL to use your own Redis)"
	if !a.Embedded {
		redis = redacted(a.RedisURL)
	}
	listen := a.Listen
	if host, _, err := net.SplitHostPort(a.Listen); err == nil {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			listen += " on every interface"
		}
	}
	cli := a.redisCLI()
	fmt.Fprintf(w, `
caddy-notify demo is running.

  Page       %s
  Listening  %s (DEMO_ADDR=127.0.0.1:9000 make demo, or -addr, to change it)
  Users      alice (token alice-token), bob (token bob-token);
             mallory (token mallory-token) is refused by the auth API on purpose
  Redis      %s
  Auth API   %s

Publish a notification for alice (redis-cli: package redis-tools on Debian/Ubuntu):
  %s PUBLISH %s '{"recipient_id":"alice","text":"hello alice"}'
Broadcast to every stream:
  %s PUBLISH %s '{"recipient_id":"*","text":"hello everyone"}'
Stream without a browser:
  curl -N -H 'Authorization: Bearer bob-token' %sevents

Press Ctrl-C to stop.
`, a.URL, listen, redis, a.AuthURL, cli, channel, cli, channel, a.URL)
}
