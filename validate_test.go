package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// siteJSON puts one notify handler object, given without its "handler"
// key, in the config the Caddyfile ":8080 { notify { ... } }" adapts to:
// the JSON path of the tests below then fails with exactly the text of the
// Caddyfile path.
func siteJSON(t *testing.T, handler string) string {
	t.Helper()
	var h map[string]any
	if err := json.Unmarshal([]byte(handler), &h); err != nil {
		t.Fatalf("decoding %s: %v", handler, err)
	}
	h["handler"] = "notify"
	b, _ := json.Marshal(h)
	return `{"apps":{"http":{"servers":{"srv0":{"listen":[":8080"],"routes":[{"handle":[` + string(b) + `]}]}}}}}`
}

// caddyfileLines adapts a Caddyfile site holding one notify block (its
// directive on line 2) and loads it, as `caddy run` does: it returns the
// lines of the adapter's error, each checked to name line 2 and cut of that
// mention, or, when the block adapts (placeholders are left for the load),
// the lines of Validate's error at the load. nil when both succeed.
func caddyfileLines(t *testing.T, block string) []string {
	t.Helper()
	src := ":8080 {\n\tnotify {\n" + block + "\n\t}\n}\n"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	if err == nil {
		if err := loadErr(t, string(out)); err != nil {
			return notifyLines(t, err)
		}
		return nil
	}
	_, msg, ok := strings.Cut(err.Error(), "parsing caddyfile tokens for 'notify': ")
	if !ok {
		t.Fatalf("adapting %q: %v", block, err)
	}
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		var cut bool
		if lines[i], cut = strings.CutSuffix(l, ", at Caddyfile:2"); !cut {
			t.Errorf("%q does not name the notify directive's line", l)
		}
	}
	return lines
}

// loadErr provisions and validates a JSON config as loading it does
// (caddy run, reload, caddy adapt --validate), without starting it.
func loadErr(t *testing.T, cfgJSON string) error {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		t.Fatalf("decoding %s: %v", cfgJSON, err)
	}
	return caddy.Validate(&cfg)
}

// notifyLines returns the lines of Validate's error inside Caddy's error:
// the first line's Caddy prefix ("loading … http.handlers.notify: invalid
// configuration: ") is cut off.
func notifyLines(t *testing.T, err error) []string {
	t.Helper()
	const marker = "http.handlers.notify: invalid configuration: "
	_, msg, ok := strings.Cut(err.Error(), marker)
	if !ok {
		t.Fatalf("not an error of Validate: %v", err)
	}
	return strings.Split(msg, "\n")
}

// TestSameErrorFromCaddyfileAndJSON builds each mistake both ways, a
// Caddyfile block through the adapter and the JSON handler object a JSON
// user would write, loads each, and requires the same error: from the
// adapter, naming the block's line, or from the load.
func TestSameErrorFromCaddyfileAndJSON(t *testing.T) {
	const auth = "\t\tauth_url http://a/\n"
	const authJSON = `"auth_url":"http://a/",`
	t.Setenv("NOTIFY_TEST_RELATIVE_URL", "/check")
	t.Setenv("NOTIFY_TEST_EMPTY", "")
	tests := []struct {
		name, caddyfile, handler string
		want                     string // Validate's message; "" when both load
	}{
		{"valid", auth, `{"auth_url":"http://a/"}`, ""},
		{"valid stream", auth + "stream s\nreplay_limit 10\nhistory_bytes 1MiB",
			`{"auth_url":"http://a/","stream":"s","replay_limit":10,"history_bytes":1048576}`, ""},
		{"missing auth_url", "redis redis://127.0.0.1:6379", `{"redis":"redis://127.0.0.1:6379"}`,
			"notify: auth_url is required"},
		{"relative auth_url", "auth_url /check", `{"auth_url":"/check"}`,
			`notify: auth_url: "/check" is not an absolute http:// or https:// URL`},
		{"ftp auth_url", "auth_url ftp://a/", `{"auth_url":"ftp://a/"}`,
			`notify: auth_url: "ftp://a/" is not an absolute http:// or https:// URL`},
		{"auth_url from env, relative", "auth_url {env.NOTIFY_TEST_RELATIVE_URL}", `{"auth_url":"{env.NOTIFY_TEST_RELATIVE_URL}"}`,
			`notify: auth_url: "/check" is not an absolute http:// or https:// URL`},
		{"auth_url from env, empty", "auth_url {env.NOTIFY_TEST_EMPTY}", `{"auth_url":"{env.NOTIFY_TEST_EMPTY}"}`,
			"notify: auth_url {env.NOTIFY_TEST_EMPTY} resolves to an empty value"},
		{"auth_url with a request placeholder", "auth_url https://{http.request.host}/auth", `{"auth_url":"https://{http.request.host}/auth"}`,
			"notify: auth_url https://{http.request.host}/auth holds a placeholder that is unknown at startup; only global ones such as {env.AUTH_URL} are resolved"},
		{"bad redis", auth + "redis http://user:s3cret@cache:6379", `{` + authJSON + `"redis":"http://user:s3cret@cache:6379"}`,
			"notify: redis: not a valid redis://, rediss://, redis+sentinel:// or redis+cluster:// URL"},
		{"bad redis from env", auth + "redis {env.NOTIFY_TEST_EMPTY}", `{` + authJSON + `"redis":"{env.NOTIFY_TEST_EMPTY}"}`,
			"notify: redis: once placeholders are resolved, not a valid redis://, rediss://, redis+sentinel:// or redis+cluster:// URL"},
		{"valid cluster, sharded, partitions", auth + "redis redis+cluster://u:s3cret@127.0.0.1:7000,127.0.0.1:7001\nsharded\npartitions 16",
			`{` + authJSON + `"redis":"redis+cluster://u:s3cret@127.0.0.1:7000,127.0.0.1:7001","sharded":true,"partitions":16}`, ""},
		{"valid sentinel stream", auth + "redis redis+sentinel://u:s3cret@127.0.0.1:26379/1?master_name=m\nstream s\npartitions 1024",
			`{` + authJSON + `"redis":"redis+sentinel://u:s3cret@127.0.0.1:26379/1?master_name=m","stream":"s","partitions":1024}`, ""},
		{"sentinel without master_name", auth + "redis redis+sentinel://u:s3cret@127.0.0.1:26379",
			`{` + authJSON + `"redis":"redis+sentinel://u:s3cret@127.0.0.1:26379"}`,
			"notify: redis: " + "not a valid redis://, rediss://, redis+sentinel:// or redis+cluster:// URL" + ": redis+sentinel:// needs ?master_name="},
		{"sharded stream", auth + "stream s\nsharded", `{` + authJSON + `"stream":"s","sharded":true}`,
			"notify: sharded applies to pub/sub mode only: a stream is read with XREAD, which a cluster routes to its shard anyway"},
		{"valid groups and events", auth + "groups_field groups\nevent_field type",
			`{` + authJSON + `"groups_field":"groups","event_field":"type"}`, ""},
		{"valid groups with a group_field", auth + "groups_field teams\ngroup_field to_teams",
			`{` + authJSON + `"groups_field":"teams","group_field":"to_teams"}`, ""},
		{"group_field without groups_field", auth + "group_field groups", `{` + authJSON + `"group_field":"groups"}`,
			"notify: group_field applies with groups_field only: streams have groups when the auth API names them; set groups_field, or remove group_field"},
		{"group_field is the recipient_field", auth + "groups_field g\ngroup_field recipient_id",
			`{` + authJSON + `"groups_field":"g","group_field":"recipient_id"}`,
			"notify: group_field and recipient_field must be different fields"},
		{"event_field is the group_field", auth + "groups_field g\nevent_field groups",
			`{` + authJSON + `"groups_field":"g","event_field":"groups"}`,
			"notify: event_field must be a field of its own, not the recipient_field or group_field"},
		{"groups_field is the user_field", auth + "groups_field user_id", `{` + authJSON + `"groups_field":"user_id"}`,
			"notify: groups_field and user_field must be different fields"},
		{"partitions 1025", auth + "partitions 1025", `{` + authJSON + `"partitions":1025}`,
			"notify: partitions must be a whole number from 1 to 1024"},
		{"negative partitions", auth + "partitions -1", `{` + authJSON + `"partitions":-1}`,
			"notify: partitions must be a whole number from 1 to 1024"},
		{"channel and stream", auth + "channel c\nstream s", `{` + authJSON + `"channel":"c","stream":"s"}`,
			"notify: channel and stream are alternatives: set one"},
		{"stream_field without stream", auth + "stream_field body", `{` + authJSON + `"stream_field":"body"}`,
			"notify: stream_field applies to stream mode only: set stream, or remove stream_field"},
		{"replay_limit without stream", auth + "replay_limit 5", `{` + authJSON + `"replay_limit":5}`,
			"notify: replay_limit applies to stream mode only: set stream, or remove replay_limit"},
		{"history_entries without stream", auth + "history_entries 5", `{` + authJSON + `"history_entries":5}`,
			"notify: history_entries applies to stream mode only: set stream, or remove history_entries"},
		{"history_bytes without stream", auth + "history_bytes 64MiB", `{` + authJSON + `"history_bytes":67108864}`,
			"notify: history_bytes applies to stream mode only: set stream, or remove history_bytes"},
		{"negative replay_limit", auth + "stream s\nreplay_limit -1", `{` + authJSON + `"stream":"s","replay_limit":-1}`,
			"notify: replay_limit must be a positive whole number"},
		{"negative history_entries", auth + "stream s\nhistory_entries -1", `{` + authJSON + `"stream":"s","history_entries":-1}`,
			"notify: history_entries must be a positive whole number"},
		{"negative history_bytes", auth + "stream s\nhistory_bytes -1KiB", `{` + authJSON + `"stream":"s","history_bytes":-1024}`,
			"notify: history_bytes must be a size from 1 byte to 1 TiB"},
		{"history_bytes above 1 TiB", auth + "stream s\nhistory_bytes 2TiB", `{` + authJSON + `"stream":"s","history_bytes":2199023255552}`,
			"notify: history_bytes must be a size from 1 byte to 1 TiB"},
		// JSON cannot say "queue_size": 0 apart from leaving it out (0 is
		// the unset value of an omitempty field, as in every Caddy module),
		// so there a 0 means the default; a written 0 in a Caddyfile is
		// refused (TestCaddyfileRefusesWrittenZeros).
		{"queue_size 0 in JSON", auth, `{` + authJSON + `"queue_size":0}`, ""},
		{"auth_concurrency 10000", auth + "auth_concurrency 10000", `{` + authJSON + `"auth_concurrency":10000}`, ""},
		{"auth_concurrency 10001", auth + "auth_concurrency 10001", `{` + authJSON + `"auth_concurrency":10001}`,
			"notify: auth_concurrency must be a whole number from 1 to 10000"},
		{"negative auth_concurrency", auth + "auth_concurrency -1", `{` + authJSON + `"auth_concurrency":-1}`,
			"notify: auth_concurrency must be a whole number from 1 to 10000"},
		{"reload_drain 0", auth + "reload_drain 0", `{` + authJSON + `"reload_drain":0}`, ""},
		{"negative reload_drain", auth + "reload_drain -1s", `{` + authJSON + `"reload_drain":"-1s"}`,
			"notify: reload_drain must not be negative"},
		{"takeover off", auth + "takeover off", `{` + authJSON + `"takeover":false}`, ""},
		{"queue_size 1001", auth + "queue_size 1001", `{` + authJSON + `"queue_size":1001}`,
			"notify: queue_size must be a whole number from 1 to 1000"},
		{"negative queue_size", auth + "queue_size -1", `{` + authJSON + `"queue_size":-1}`,
			"notify: queue_size must be a whole number from 1 to 1000"},
		{"negative auth_timeout", auth + "auth_timeout -1s", `{` + authJSON + `"auth_timeout":"-1s"}`,
			"notify: auth_timeout must not be negative"},
		{"negative auth_cache", auth + "auth_cache -1s", `{` + authJSON + `"auth_cache":"-1s"}`,
			"notify: auth_cache must not be negative"},
		{"negative heartbeat", auth + "heartbeat -1s", `{` + authJSON + `"heartbeat":"-1s"}`,
			"notify: heartbeat must not be negative"},
		{"negative retry", auth + "retry -1ms", `{` + authJSON + `"retry":-1000000}`,
			"notify: retry must not be negative"},
		{"negative write_timeout", auth + "write_timeout -1s", `{` + authJSON + `"write_timeout":"-1s"}`,
			"notify: write_timeout must not be negative"},
		{"cors origin with a path", auth + "cors https://a.example/app", `{` + authJSON + `"cors":["https://a.example/app"]}`,
			`notify: cors: "https://a.example/app" is not an origin such as https://app.example.com`},
		{"cors origin without scheme", auth + "cors app.example.com", `{` + authJSON + `"cors":["app.example.com"]}`,
			`notify: cors: "app.example.com" is not an origin such as https://app.example.com`},
		{"cors * with listed origins", auth + "cors https://a.example\ncors *", `{` + authJSON + `"cors":["https://a.example","*"]}`,
			`notify: cors: "*" allows any origin without credentials; it cannot be combined with listed origins`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fromCaddyfile := caddyfileLines(t, tt.caddyfile)
			var fromJSON []string
			if err := loadErr(t, siteJSON(t, tt.handler)); err != nil {
				fromJSON = notifyLines(t, err)
			}
			var want []string
			if tt.want != "" {
				want = []string{tt.want}
			}
			if !slices.Equal(fromCaddyfile, want) || !slices.Equal(fromJSON, want) {
				t.Errorf("want %q from both\nCaddyfile: %q\nJSON:      %q", want, fromCaddyfile, fromJSON)
			}
			if strings.Contains(fmt.Sprint(fromCaddyfile, fromJSON), "s3cret") {
				t.Errorf("the Redis password is in the error: %v", fromJSON)
			}
		})
	}
}

// TestValidateReportsAllInFieldOrder: several mistakes come out together,
// one per line, in the order of Handler's fields, whichever order they were
// written in. Run it with -count=20: Validate must not depend on map order.
func TestValidateReportsAllInFieldOrder(t *testing.T) {
	block := `		write_timeout -1s
		queue_size    5000
		cors          * https://a.example app.example.com
		retry         -1s
		heartbeat     -1s
		auth_cache    -1s
		auth_timeout  -1s
		history_bytes 1MiB
		replay_limit  5
		redis         http://user:s3cret@x`
	handler := `{"write_timeout":"-1s","queue_size":5000,"cors":["*","https://a.example","app.example.com"],` +
		`"retry":"-1s","heartbeat":"-1s","auth_cache":"-1s","auth_timeout":"-1s","history_bytes":1048576,` +
		`"replay_limit":5,"redis":"http://user:s3cret@x"}`
	want := []string{
		"notify: redis: not a valid redis://, rediss://, redis+sentinel:// or redis+cluster:// URL",
		"notify: replay_limit applies to stream mode only: set stream, or remove replay_limit",
		"notify: history_bytes applies to stream mode only: set stream, or remove history_bytes",
		"notify: auth_url is required",
		"notify: auth_timeout must not be negative",
		"notify: auth_cache must not be negative",
		"notify: heartbeat must not be negative",
		"notify: retry must not be negative",
		`notify: cors: "app.example.com" is not an origin such as https://app.example.com`,
		`notify: cors: "*" allows any origin without credentials; it cannot be combined with listed origins`,
		"notify: queue_size must be a whole number from 1 to 1000",
		"notify: write_timeout must not be negative",
	}
	fromCaddyfile := caddyfileLines(t, block)
	err := loadErr(t, siteJSON(t, handler))
	if err == nil {
		t.Fatal("the JSON config loads")
	}
	for name, got := range map[string][]string{"Caddyfile": fromCaddyfile, "JSON": notifyLines(t, err)} {
		if !slices.Equal(got, want) {
			t.Errorf("%s: got\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// TestProvisionBuildsNothingWhenInvalid: Caddy provisions before it
// validates, so Provision must neither fail on Validate's mistakes (its
// message would win) nor build on them; Cleanup then finds nothing to undo.
func TestProvisionBuildsNothingWhenInvalid(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	before := liveHubs()
	h := Handler{Source: Source{Redis: "http://user:s3cret@x"}, AuthURL: "relative", QueueSize: -1}
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v; want nil and Validate to report", err)
	}
	if h.gateway != nil || h.auth != nil || liveHubs() != before {
		t.Error("Provision built on an invalid config")
	}
	if h.Validate() == nil {
		t.Error("Validate accepted an invalid config")
	}
	if err := h.Cleanup(); err != nil {
		t.Errorf("Cleanup: %v", err)
	}
}

// TestValidate covers Validate called on its own, as caddy.Validator: it
// applies the defaults to a copy and leaves h as it was.
func TestValidate(t *testing.T) {
	t.Setenv("NOTIFY_TEST_AUTH_URL", "https://auth.example/check")
	t.Setenv("NOTIFY_TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
	tests := []struct {
		name    string
		h       Handler
		wantErr string
	}{
		{"ok", Handler{AuthURL: "http://a/"}, ""},
		{"ok stream", Handler{Source: Source{Stream: "s"}, AuthURL: "http://a/"}, ""},
		{"ok placeholders", Handler{Source: Source{Redis: "{env.NOTIFY_TEST_REDIS_URL}"}, AuthURL: "{env.NOTIFY_TEST_AUTH_URL}"}, ""},
		{"ok cors *", Handler{AuthURL: "http://a/", CORS: []string{"*"}}, ""},
		{"ok heartbeat off", Handler{AuthURL: "http://a/", Heartbeat: new(caddy.Duration(0))}, ""},
		{"no auth_url", Handler{}, "notify: auth_url is required"},
		{"auth_url password", Handler{AuthURL: "ftp://u:s3cret@a/"}, `notify: auth_url: "ftp://u:xxxxx@a/" is not an absolute http:// or https:// URL`},
		{"unparsable auth_url", Handler{AuthURL: "http://a/\x7f"}, "notify: auth_url: not a valid URL: net/url: invalid control character in URL"},
		{"empty cors origin", Handler{AuthURL: "http://a/", CORS: []string{""}}, `notify: cors: "" is not an origin such as https://app.example.com`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h
			before, _ := json.Marshal(h)
			err := h.Validate()
			if (tt.wantErr == "") != (err == nil) || (err != nil && err.Error() != tt.wantErr) {
				t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
			}
			if after, _ := json.Marshal(h); string(after) != string(before) {
				t.Errorf("Validate modified the config:\n%s\nbecame\n%s", before, after)
			}
		})
	}
}
