package notify

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

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
//	    auth_url             <url>
//	    redis                <url>
//	    channel              <name>
//	    sharded
//	    partitions           <n>
//	    stream               <key>
//	    stream_field         <field>
//	    replay_limit         <events>
//	    history_entries      <entries>
//	    history_bytes        <size>
//	    recipient_field      <field>
//	    group_field          <field>
//	    event_field          <field>
//	    user_field           <field>
//	    groups_field         <field>
//	    auth_timeout         <duration>
//	    auth_cache           <duration>
//	    auth_concurrency     <requests>
//	    reauth               <duration>
//	    max_streams_per_user <streams>
//	    max_streams          <streams>
//	    control_channel      <name>
//	    presence             <key>
//	    presence_interval    <duration>
//	    token_query          <parameter>
//	    token_cookie         <cookie>
//	    heartbeat            <duration>
//	    retry                <duration>
//	    broadcast
//	    cors                 <origin...>
//	    queue_size           <events>
//	    queue_bytes          <size>
//	    write_timeout        <duration>
//	    max_message_size     <size>
//	    takeover             on|off
//	    reload_drain         <duration>
//	}
//
// Every subdirective may appear once, except cors, which may be repeated.
//
// The parser reads syntax: names, argument counts, repeats, nested blocks,
// and values that do not parse into their field's type (a duration, a size,
// a whole number) or that are zero where the setting's range starts above
// zero (in JSON, 0 means the default; written in a Caddyfile it is a
// mistake). Meaning (auth_url is required, URL shapes, ranges, settings
// that need stream, origins) is Validate's: the parser runs the same rules
// on the block it read, so that their errors name its line, and leaves
// values with placeholders for the load, when they are resolved.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	b := newBlockSyntax("notify")
	h.Source.caddyfileSyntax(&b)
	// The subdirectives that take one value, each with the field it goes
	// into: adding a setting is one line here.
	for name, set := range map[string]func(string) error{
		"replay_limit":         setPositive(&h.ReplayLimit),
		"history_entries":      setPositive(&h.HistoryEntries),
		"history_bytes":        setPositiveSize(&h.HistoryBytes),
		"auth_url":             setString(&h.AuthURL),
		"user_field":           setString(&h.UserField),
		"groups_field":         setString(&h.GroupsField),
		"event_field":          setString(&h.EventField),
		"auth_timeout":         setPositiveDuration(&h.AuthTimeout),
		"auth_cache":           setDuration(&h.AuthCache),
		"auth_concurrency":     setPositive(&h.AuthConcurrency),
		"reauth":               setDuration(&h.Reauth),
		"max_streams_per_user": setInt(&h.MaxStreamsPerUser),
		"max_streams":          setInt(&h.MaxStreams),
		"control_channel":      setString(&h.ControlChannel),
		"presence":             setString(&h.Presence),
		"presence_interval":    setPositiveDuration(&h.PresenceInterval),
		"token_query":          setString(&h.TokenQuery),
		"token_cookie":         setString(&h.TokenCookie),
		"heartbeat": func(arg string) error {
			// A pointer: 0 turns heartbeats off, unset means the default.
			var hb caddy.Duration
			if err := setDuration(&hb)(arg); err != nil {
				return err
			}
			h.Heartbeat = &hb
			return nil
		},
		"retry":         setPositiveDuration(&h.Retry),
		"queue_size":    setPositive(&h.QueueSize),
		"write_timeout": setPositiveDuration(&h.WriteTimeout),
		"queue_bytes":   setPositiveSize(&h.QueueBytes),
		"takeover":      setOnOff(&h.Takeover),
		"reload_drain": func(arg string) error {
			// A pointer: 0 ends the streams at once, unset means the
			// default.
			var d caddy.Duration
			if err := setDuration(&d)(arg); err != nil {
				return err
			}
			h.ReloadDrain = &d
			return nil
		},
	} {
		b.single[name] = set
	}
	b.flags["broadcast"] = &h.Broadcast
	b.lists["cors"] = func(origins []string) error {
		if len(origins) == 0 {
			return errors.New("cors needs at least one origin")
		}
		for _, o := range origins {
			if !slices.Contains(h.CORS, o) {
				h.CORS = append(h.CORS, o)
			}
		}
		return nil
	}
	at, err := b.parse(d)
	if err != nil {
		return err
	}
	return atDirective(at, h.mistakes(true))
}

// blockSyntax is what the block of a directive (notify, notify_publish) may
// hold: subdirectives with one value (single, each with the setter that
// puts it in its field), flags without arguments, and lists of one or more
// values that may be repeated. Every other subdirective may appear once.
type blockSyntax struct {
	directive string
	single    map[string]func(string) error
	flags     map[string]*bool
	lists     map[string]func([]string) error
}

func newBlockSyntax(directive string) blockSyntax {
	return blockSyntax{directive: directive, single: map[string]func(string) error{},
		flags: map[string]*bool{}, lists: map[string]func([]string) error{}}
}

// parse reads the directive and its block: syntax only (names, argument
// counts, repeats, nested blocks, values of the wrong type), with the file
// and line in every error. It returns a dispenser on the directive's
// token, for errors about the block as a whole.
func (b blockSyntax) parse(d *caddyfile.Dispenser) (*caddyfile.Dispenser, error) {
	d.Next() // directive name; the matcher was already removed
	at := caddyfile.NewDispenser([]caddyfile.Token{d.Token()})
	at.Next()
	if d.NextArg() {
		return nil, d.Errf("%s takes no arguments besides a matcher; put settings in its block", b.directive)
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		set, isSingle := b.single[opt]
		flag, isFlag := b.flags[opt]
		list, isList := b.lists[opt]
		if !isSingle && !isFlag && !isList {
			return nil, d.Errf("unrecognized %s subdirective %q", b.directive, opt)
		}
		if seen[opt] && !isList {
			return nil, d.Errf("%s specified more than once", opt)
		}
		seen[opt] = true
		args := d.RemainingArgs()
		if d.NextBlock(d.Nesting()) {
			return nil, d.Errf("%s does not take a block", opt)
		}
		switch {
		case isFlag:
			if len(args) > 0 {
				return nil, d.Errf("%s takes no arguments", opt)
			}
			*flag = true
		case isList:
			if err := list(args); err != nil {
				return nil, d.Err(err.Error())
			}
		case len(args) != 1:
			return nil, d.Errf("%s takes exactly one argument", opt)
		default:
			if err := set(args[0]); err != nil {
				return nil, d.Errf("%s: %v", opt, err)
			}
		}
	}
	return at, nil
}

// atDirective names the directive's file and line in each of errs, the
// mistakes Validate found in the block.
func atDirective(at *caddyfile.Dispenser, errs []error) error {
	for i, err := range errs {
		errs[i] = at.WrapErr(err)
	}
	return errors.Join(errs...)
}

// The setters below only turn text into a field's type; a value of the right
// type that is out of range or makes no sense is left for Validate.

func setString(field *string) func(string) error {
	return func(arg string) error {
		*field = arg
		return nil
	}
}

func setInt(field *int) func(string) error {
	return func(arg string) error {
		n, err := strconv.Atoi(arg)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", arg)
		}
		*field = n
		return nil
	}
}

// setSize reads a size such as 32MiB or 512KB. A leading minus sign is
// accepted, as it is by setInt, so that a negative size reaches Validate
// and gets the same message as a negative number in JSON.
func setSize(field *int) func(string) error {
	return func(arg string) error {
		digits, negative := strings.CutPrefix(arg, "-")
		n, err := humanize.ParseBytes(digits)
		if err != nil {
			return fmt.Errorf("%q is not a size such as 32MiB", arg)
		}
		if n > math.MaxInt {
			return fmt.Errorf("%q is too large", arg)
		}
		*field = int(n)
		if negative {
			*field = -*field
		}
		return nil
	}
}

// errZero refuses a written 0 where the setting's range starts above zero.
var errZero = errors.New("0 is not allowed here; remove the line for the default")

// setPositive is setInt for a setting whose range starts at 1.
func setPositive(field *int) func(string) error {
	return positive(setInt(field), func() bool { return *field == 0 })
}

// setPositiveSize is setSize for a setting whose range starts at 1 byte.
func setPositiveSize(field *int) func(string) error {
	return positive(setSize(field), func() bool { return *field == 0 })
}

// setPositiveDuration is setDuration for a setting that must be longer
// than 0.
func setPositiveDuration(field *caddy.Duration) func(string) error {
	return positive(setDuration(field), func() bool { return *field == 0 })
}

// positive refuses, after set, a value that isZero reports as 0. A negative
// one is left for Validate, whose message names the range.
func positive(set func(string) error, isZero func() bool) func(string) error {
	return func(arg string) error {
		if err := set(arg); err != nil {
			return err
		}
		if isZero() {
			return errZero
		}
		return nil
	}
}

// setOnOff reads on or off into a setting whose default, when unset, is
// decided elsewhere.
func setOnOff(field **bool) func(string) error {
	return func(arg string) error {
		var on bool
		switch arg {
		case "on":
			on = true
		case "off":
		default:
			return fmt.Errorf("%q is neither on nor off", arg)
		}
		*field = &on
		return nil
	}
}

func setDuration(field *caddy.Duration) func(string) error {
	return func(arg string) error {
		dur, err := caddy.ParseDuration(arg)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 500ms, 15s or 1d", arg)
		}
		*field = caddy.Duration(dur)
		return nil
	}
}
