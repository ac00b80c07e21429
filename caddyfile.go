package notify

import (
	"slices"
	"strconv"

	"github.com/dustin/go-humanize"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("notify", parseCaddyfile)
	// Before encode: the stream is never wrapped by a compressor, and it
	// runs after basic_auth, forward_auth and request_header.
	httpcaddyfile.RegisterDirectiveOrder("notify", httpcaddyfile.Before, "encode")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	notify [<matcher>] {
//	    auth_url        <url>
//	    redis           <url>
//	    channel         <name>
//	    stream          <key>
//	    stream_field    <field>
//	    replay_limit    <events>
//	    history_entries <entries>
//	    history_bytes   <size>
//	    recipient_field <field>
//	    user_field      <field>
//	    auth_timeout    <duration>
//	    auth_cache      <duration>
//	    token_query     <parameter>
//	    token_cookie    <cookie>
//	    heartbeat       <duration>
//	    retry           <duration>
//	    broadcast
//	    cors            <origin...>
//	    queue_size      <events>
//	    write_timeout   <duration>
//	}
//
// auth_url is required; every other subdirective is optional and may appear
// once, except cors, which may be repeated.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name; the matcher was already removed
	if d.NextArg() {
		return d.Errf("notify takes no arguments besides a matcher; put settings in its block")
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if seen[opt] && opt != "cors" {
			return d.Errf("%s specified more than once", opt)
		}
		seen[opt] = true

		switch opt {
		case "broadcast":
			if d.NextArg() {
				return d.Errf("broadcast takes no arguments")
			}
			h.Broadcast = true
			continue
		case "cors":
			origins := d.RemainingArgs()
			if len(origins) == 0 {
				return d.Errf("cors needs at least one origin")
			}
			for _, o := range origins {
				if err := checkOrigin(o); err != nil {
					return d.Errf("cors: %v", err)
				}
				if !slices.Contains(h.CORS, o) {
					h.CORS = append(h.CORS, o)
				}
			}
			continue
		}

		var arg string
		if !d.AllArgs(&arg) {
			return d.Errf("%s takes exactly one argument", opt)
		}
		if d.NextBlock(d.Nesting()) {
			return d.Errf("%s does not take a block", opt)
		}
		switch opt {
		case "redis":
			if !hasPlaceholder(arg) {
				if err := checkRedisURL(arg); err != nil {
					return d.Errf("redis: %v", err)
				}
			}
			h.Redis = arg
		case "channel":
			if seen["stream"] {
				return d.Errf("channel and stream are alternatives: name one")
			}
			h.Channel = arg
		case "stream":
			if seen["channel"] {
				return d.Errf("channel and stream are alternatives: name one")
			}
			h.Stream = arg
		case "stream_field":
			h.StreamField = arg
		case "replay_limit", "history_entries":
			n, err := strconv.Atoi(arg)
			if err != nil || n < 1 {
				return d.Errf("%s must be a positive whole number", opt)
			}
			if opt == "replay_limit" {
				h.ReplayLimit = n
			} else {
				h.HistoryEntries = n
			}
		case "history_bytes":
			n, err := humanize.ParseBytes(arg)
			if err != nil || n < 1 || n > 1<<40 {
				return d.Errf("history_bytes must be a size such as 32MiB")
			}
			h.HistoryBytes = int(n)
		case "recipient_field":
			h.RecipientField = arg
		case "auth_url":
			if !hasPlaceholder(arg) {
				if err := checkHTTPURL(arg); err != nil {
					return d.Errf("auth_url: %v", err)
				}
			}
			h.AuthURL = arg
		case "user_field":
			h.UserField = arg
		case "token_query":
			h.TokenQuery = arg
		case "token_cookie":
			h.TokenCookie = arg
		case "auth_timeout", "retry", "write_timeout", "heartbeat", "auth_cache":
			dur, err := caddy.ParseDuration(arg)
			if err != nil {
				return d.Errf("parsing %s: %v", opt, err)
			}
			if dur < 0 || (dur == 0 && opt != "heartbeat" && opt != "auth_cache") {
				return d.Errf("%s must be positive", opt)
			}
			cd := caddy.Duration(dur)
			switch opt {
			case "auth_timeout":
				h.AuthTimeout = cd
			case "retry":
				h.Retry = cd
			case "write_timeout":
				h.WriteTimeout = cd
			case "heartbeat":
				h.Heartbeat = &cd
			case "auth_cache":
				h.AuthCache = cd
			}
		case "queue_size":
			n, err := strconv.Atoi(arg)
			if err != nil || n < 1 || n > MaxQueueSize {
				return d.Errf("queue_size must be a whole number from 1 to %d", MaxQueueSize)
			}
			h.QueueSize = n
		default:
			return d.Errf("unrecognized notify subdirective %q", opt)
		}
	}
	if h.AuthURL == "" {
		return d.Err("notify: auth_url is required")
	}
	if h.Stream == "" {
		for _, opt := range []string{"stream_field", "replay_limit", "history_entries", "history_bytes"} {
			if seen[opt] {
				return d.Errf("%s applies to stream mode only: add stream <key>", opt)
			}
		}
	}
	return nil
}
