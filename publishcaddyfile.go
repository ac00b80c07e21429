package notify

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("notify_publish", parsePublishCaddyfile)
	// Ordered as notify: after basic_auth and forward_auth, which guard
	// it, and never wrapped by encode.
	httpcaddyfile.RegisterDirectiveOrder("notify_publish", httpcaddyfile.Before, "encode")
}

func parsePublishCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(PublishHandler)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	notify_publish [<matcher>] {
//	    redis            <url>
//	    channel          <name>
//	    sharded
//	    partitions       <n>
//	    stream           <key>
//	    stream_field     <field>
//	    stream_maxlen    <entries>
//	    recipient_field  <field>
//	    group_field      <field>
//	    max_message_size <size>
//	    max_body         <size>
//	    body_timeout     <duration>
//	}
//
// Every subdirective may appear once. As notify's parser, it reads syntax
// and runs Validate's rules on the block, to name its line.
func (p *PublishHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	b := newBlockSyntax("notify_publish")
	p.Source.caddyfileSyntax(&b)
	b.single["stream_maxlen"] = func(arg string) error {
		// A pointer: 0 never trims, unset means the default.
		var n int
		if err := setInt(&n)(arg); err != nil {
			return err
		}
		p.StreamMaxLen = &n
		return nil
	}
	b.single["max_body"] = setPositiveSize(&p.MaxBody)
	b.single["body_timeout"] = setPositiveDuration(&p.BodyTimeout)
	at, err := b.parse(d)
	if err != nil {
		return err
	}
	return atDirective(at, p.mistakes(true))
}
