package notify

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestProvisionBuildsNothingWhenInvalid: Caddy provisions before it
// validates, so Provision must neither fail on Validate's mistakes (its
// message would win) nor build on them; Cleanup then finds nothing to undo.
func TestProvisionBuildsNothingWhenInvalid(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	before := liveHubs()
	h := Handler{AuthURL: "relative", Redis: "http://user:s3cret@x", QueueSize: -1}
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v; want nil and Validate to report", err)
	}
	if h.hub != nil || h.auth != nil || h.stop != nil || liveHubs() != before {
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
		{"ok stream", Handler{AuthURL: "http://a/", Stream: "s"}, ""},
		{"ok placeholders", Handler{AuthURL: "{env.NOTIFY_TEST_AUTH_URL}", Redis: "{env.NOTIFY_TEST_REDIS_URL}"}, ""},
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
