// Command caddy is Caddy's standard build plus the notify module, so that
// `go build ./cmd/caddy` works without xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules, as in the official build.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-notify/notify"
)

func main() {
	caddycmd.Main()
}
