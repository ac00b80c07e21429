package notify

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	full := `notify {
		redis           redis+cluster://user:pw@127.0.0.1:7000,127.0.0.1:7001
		channel         alerts
		sharded
		partitions      16
		recipient_field to
		auth_url        https://app.internal/api/v1/is_user_auth/
		user_field      uid
		auth_timeout    2s
		token_query     access_token
		token_cookie    session
		heartbeat       0
		retry           1500ms
		broadcast
		cors            https://a.example http://localhost:3000
		cors            https://b.example https://a.example
		queue_size      100
		write_timeout   3s
		takeover        off
		reload_drain    0
	}`
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(full)); err != nil {
		t.Fatal(err)
	}
	zero, off := caddy.Duration(0), false
	want := Handler{
		Source: Source{Redis: "redis+cluster://user:pw@127.0.0.1:7000,127.0.0.1:7001", Channel: "alerts", Sharded: true,
			Partitions: 16, RecipientField: "to"},
		AuthURL: "https://app.internal/api/v1/is_user_auth/", UserField: "uid", AuthTimeout: caddy.Duration(2e9),
		TokenQuery: "access_token", TokenCookie: "session", Heartbeat: &zero, Retry: caddy.Duration(1.5e9), Broadcast: true,
		CORS:      []string{"https://a.example", "http://localhost:3000", "https://b.example"},
		QueueSize: 100, WriteTimeout: caddy.Duration(3e9), Takeover: &off, ReloadDrain: &zero,
	}
	got, _ := json.Marshal(h)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Errorf("parsed\n%s\nwant\n%s", got, exp)
	}
}

// TestUnmarshalCaddyfileErrors covers the parser's own errors: syntax only.
// Mistakes of meaning parse fine and are Validate's (see validate_test.go).
func TestUnmarshalCaddyfileErrors(t *testing.T) {
	tests := []struct{ name, input, wantErr string }{
		{"inline argument", "notify extra {\n auth_url http://a/\n}", "notify takes no arguments besides a matcher"},
		{"unknown subdirective", "notify {\n auth_url http://a/\n bogus 1\n}", `unrecognized notify subdirective "bogus"`},
		{"unknown subdirective twice", "notify {\n bogus\n bogus\n}", `unrecognized notify subdirective "bogus"`},
		{"no value", "notify {\n auth_url\n}", "auth_url takes exactly one argument"},
		{"two values", "notify {\n auth_url http://a/ http://b/\n}", "auth_url takes exactly one argument"},
		{"duplicate", "notify {\n auth_url http://a/\n auth_url http://b/\n}", "auth_url specified more than once"},
		{"duplicate broadcast", "notify {\n broadcast\n broadcast\n}", "broadcast specified more than once"},
		{"bad duration", "notify {\n heartbeat soon\n}", `heartbeat: "soon" is not a duration such as 500ms, 15s or 1d`},
		{"bad number", "notify {\n queue_size many\n}", `queue_size: "many" is not a whole number`},
		{"fraction", "notify {\n replay_limit 1.5\n}", `replay_limit: "1.5" is not a whole number`},
		{"bad size", "notify {\n history_bytes lots\n}", `history_bytes: "lots" is not a size such as 32MiB`},
		{"size past int", "notify {\n history_bytes 9EiB\n}", `history_bytes: "9EiB" is too large`},
		{"broadcast with argument", "notify {\n broadcast yes\n}", "broadcast takes no arguments"},
		{"sharded with argument", "notify {\n sharded yes\n}", "sharded takes no arguments"},
		{"duplicate sharded", "notify {\n sharded\n sharded\n}", "sharded specified more than once"},
		{"partitions without value", "notify {\n partitions\n}", "partitions takes exactly one argument"},
		{"partitions not a number", "notify {\n partitions many\n}", `partitions: "many" is not a whole number`},
		{"cors without origin", "notify {\n cors\n}", "cors needs at least one origin"},
		{"nested block", "notify {\n auth_url http://a/ {\n x\n }\n}", "auth_url does not take a block"},
		{"block on broadcast", "notify {\n broadcast {\n x\n }\n}", "broadcast does not take a block"},
		{"block on cors", "notify {\n cors https://a.example {\n x\n }\n}", "cors does not take a block"},
		{"takeover yes", "notify {\n takeover yes\n}", `takeover: "yes" is neither on nor off`},
		{"reload_drain soon", "notify {\n reload_drain soon\n}", `reload_drain: "soon" is not a duration such as 500ms, 15s or 1d`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestCaddyfileRefusesWrittenZeros: a written 0 for a setting whose range
// starts above zero is a mistake named with its line (in JSON, 0 is the
// default); where 0 means off, it is accepted.
func TestCaddyfileRefusesWrittenZeros(t *testing.T) {
	for _, name := range []string{"partitions", "max_message_size", "auth_timeout", "auth_concurrency",
		"retry", "queue_size", "write_timeout", "queue_bytes"} {
		input := "notify {\n auth_url http://a/\n " + name + " 0\n}"
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		want := name + ": 0 is not allowed here; remove the line for the default, at Testfile:3"
		if err == nil || err.Error() != want {
			t.Errorf("%s 0: err = %v, want %q", name, err, want)
		}
	}
	for _, name := range []string{"replay_limit", "history_entries", "history_bytes"} {
		input := "notify {\n auth_url http://a/\n stream s\n " + name + " 0\n}"
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		want := name + ": 0 is not allowed here; remove the line for the default, at Testfile:4"
		if err == nil || err.Error() != want {
			t.Errorf("%s 0: err = %v, want %q", name, err, want)
		}
	}
	input := "notify {\n auth_url http://a/\n presence online\n presence_interval 0\n}"
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil ||
		err.Error() != "presence_interval: 0 is not allowed here; remove the line for the default, at Testfile:4" {
		t.Errorf("presence_interval 0: err = %v", err)
	}
	// 0 turns these off.
	for _, line := range []string{"heartbeat 0", "auth_cache 0", "reauth 0", "max_streams 0", "max_streams_per_user 0"} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("notify {\n auth_url http://a/\n " + line + "\n}")); err != nil {
			t.Errorf("%s: %v", line, err)
		}
	}
}

// TestCaddyfileMeaningErrorsNameTheBlock: the rules of Validate run on the
// block the parser read, each mistake named with the line of the notify
// directive, in Validate's words; values with placeholders are left for the
// load, when they are resolved.
func TestCaddyfileMeaningErrorsNameTheBlock(t *testing.T) {
	tests := []struct{ name, input, want string }{
		{"no auth_url", "\nnotify {\n heartbeat 10s\n}", "notify: auth_url is required, at Testfile:2"},
		{"several", "notify {\n auth_url /relative\n channel c\n stream s\n retry -1s\n}",
			"notify: channel and stream are alternatives: set one, at Testfile:1\n" +
				"notify: auth_url: \"/relative\" is not an absolute http:// or https:// URL, at Testfile:1\n" +
				"notify: retry must not be negative, at Testfile:1"},
		{"partitions", "notify {\n auth_url http://a/\n partitions 5000\n}", "notify: partitions must be a whole number from 1 to 1024, at Testfile:1"},
		{"cors", "notify {\n auth_url http://a/\n cors * app.example.com\n}",
			"notify: cors: \"app.example.com\" is not an origin such as https://app.example.com, at Testfile:1\n" +
				"notify: cors: \"*\" allows any origin without credentials; it cannot be combined with listed origins, at Testfile:1"},
		{"placeholders", "notify {\n auth_url {env.NOTIFY_TEST_UNSET}\n redis {env.NOTIFY_TEST_UNSET}\n}", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if got := fmt.Sprint(err); (tt.want == "" && err != nil) || (tt.want != "" && got != tt.want) {
				t.Errorf("err =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

// TestAdaptErrorsNameFileAndLine runs the Caddyfile adapter, as `caddy adapt`
// does, and checks that a syntax error in a notify block names its file and
// line.
func TestAdaptErrorsNameFileAndLine(t *testing.T) {
	tests := []struct{ input, want string }{
		{"example.com {\n\tnotify /events {\n\t\tauth_url http://a/\n\t\tauth_url http://b/\n\t}\n}\n", "auth_url specified more than once, at Caddyfile:4"},
		{"example.com {\n\tnotify {\n\t\tauth_url http://a/\n\t\theartbeat often\n\t}\n}\n", `heartbeat: "often" is not a duration such as 500ms, 15s or 1d, at Caddyfile:4`},
		{"example.com {\n\tnotify {\n\t\tauth_url http://a/\n\t\tqueue 5\n\t}\n}\n", `unrecognized notify subdirective "queue", at Caddyfile:4`},
		{"example.com {\n\tnotify {\n\t\tauth_url http://a/\n\t\tqueue_size 0\n\t}\n}\n", `queue_size: 0 is not allowed here; remove the line for the default, at Caddyfile:4`},
		{"example.com {\n\troute {\n\t\tnotify /events {\n\t\t\theartbeat 10s\n\t\t}\n\t}\n}\n", `notify: auth_url is required, at Caddyfile:3`},
		{"example.com {\n\tnotify_publish /p {\n\t\tchannel a\n\t\tstream b\n\t}\n}\n", `notify_publish: channel and stream are alternatives: set one, at Caddyfile:2`},
	}
	for _, tt := range tests {
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tt.input), map[string]any{"filename": "Caddyfile"})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("adapting %q: err = %v, want it to contain %q", tt.input, err, tt.want)
		}
	}
}

var updateGolden = flag.Bool("update", false, "rewrite testdata/*.caddyfiletest with the adapter's output")

// TestAdaptGolden adapts each testdata/*.caddyfiletest (Caddyfile, a line
// of dashes, expected JSON) and checks that the JSON loads back into the
// same handler config.
func TestAdaptGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.caddyfiletest")
	if len(files) == 0 {
		t.Fatal("no golden files in testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatal("no ---------- separator")
			}
			got, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
			if err != nil {
				t.Fatal(err)
			}
			var pretty strings.Builder
			enc := json.NewEncoder(&pretty)
			enc.SetIndent("", "\t")
			var v any
			_ = json.Unmarshal(got, &v)
			_ = enc.Encode(v)
			if *updateGolden {
				if err := os.WriteFile(f, []byte(input+"\n----------\n"+pretty.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			} else if !jsonEqual(t, got, []byte(want)) {
				t.Fatalf("adapted JSON differs; got:\n%s", pretty.String())
			}
			// Round trip: each notify handler decodes and re-encodes
			// to the same JSON.
			var cfg struct {
				Apps struct {
					HTTP struct {
						Servers map[string]struct {
							Routes []json.RawMessage `json:"routes"`
						} `json:"servers"`
					} `json:"http"`
				} `json:"apps"`
			}
			if err := json.Unmarshal(got, &cfg); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, srv := range cfg.Apps.HTTP.Servers {
				for _, r := range srv.Routes {
					for _, hj := range findHandlers(t, r) {
						var h Handler
						if err := json.Unmarshal(hj, &h); err != nil {
							t.Fatal(err)
						}
						enc, _ := json.Marshal(&h)
						var m map[string]any
						_ = json.Unmarshal(enc, &m)
						m["handler"] = "notify"
						back, _ := json.Marshal(m)
						if !jsonEqual(t, back, hj) {
							t.Errorf("round trip\n%s\nbecame\n%s", hj, back)
						}
						n++
					}
				}
			}
			if n == 0 {
				t.Error("no notify handler in the adapted config")
			}
		})
	}
}

// findHandlers returns every object with "handler": "notify" inside v.
func findHandlers(t *testing.T, raw json.RawMessage) []json.RawMessage {
	var out []json.RawMessage
	var walk func(json.RawMessage)
	walk = func(r json.RawMessage) {
		var obj map[string]json.RawMessage
		if json.Unmarshal(r, &obj) == nil {
			if string(obj["handler"]) == `"notify"` {
				out = append(out, r)
				return
			}
			for _, v := range obj {
				walk(v)
			}
			return
		}
		var arr []json.RawMessage
		if json.Unmarshal(r, &arr) == nil {
			for _, v := range arr {
				walk(v)
			}
		}
	}
	walk(raw)
	return out
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("invalid JSON %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}

// TestExampleCaddyfileAdapts keeps examples/Caddyfile valid.
func TestExampleCaddyfileAdapts(t *testing.T) {
	raw, err := os.ReadFile("examples/Caddyfile")
	if errors.Is(err, fs.ErrNotExist) {
		// examples/ is a module of its own: a copy of this module taken
		// from the module cache does not hold it. In the repository it is
		// always there.
		t.Skip("examples/Caddyfile is not part of this module's copy")
	}
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(raw, map[string]any{"filename": "examples/Caddyfile"})
	if err != nil {
		t.Fatalf("examples/Caddyfile: %v", err)
	}
	if !strings.Contains(string(out), `"handler":"notify"`) {
		t.Fatalf("no notify handler in %s", out)
	}
}
