package notify

import (
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestAuthConcurrencyConfig: auth_concurrency reads the same from a
// Caddyfile and JSON, 0 means the default, and Validate keeps it within
// 1 to MaxAuthConcurrency with the same message for both.
func TestAuthConcurrencyConfig(t *testing.T) {
	const auth = "\t\tauth_url http://a/\n"
	tests := []struct {
		name, caddyfile, handler string
		want                     string // Validate's message; "" when both load
	}{
		{"set", auth + "auth_concurrency 8", `{"auth_url":"http://a/","auth_concurrency":8}`, ""},
		{"0 is the default", auth + "auth_concurrency 0", `{"auth_url":"http://a/","auth_concurrency":0}`, ""},
		{"largest", auth + "auth_concurrency 10000", `{"auth_url":"http://a/","auth_concurrency":10000}`, ""},
		{"too large", auth + "auth_concurrency 10001", `{"auth_url":"http://a/","auth_concurrency":10001}`,
			"notify: auth_concurrency must be a whole number from 1 to 10000"},
		{"negative", auth + "auth_concurrency -1", `{"auth_url":"http://a/","auth_concurrency":-1}`,
			"notify: auth_concurrency must be a whole number from 1 to 10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fromCaddyfile := loadErr(t, adaptNotify(t, tt.caddyfile))
			fromJSON := loadErr(t, siteJSON(t, tt.handler))
			if tt.want == "" {
				if fromCaddyfile != nil || fromJSON != nil {
					t.Fatalf("want both to load; Caddyfile: %v; JSON: %v", fromCaddyfile, fromJSON)
				}
				return
			}
			if fromCaddyfile == nil || fromJSON == nil {
				t.Fatalf("want %q from both; Caddyfile: %v; JSON: %v", tt.want, fromCaddyfile, fromJSON)
			}
			if got := notifyLines(t, fromCaddyfile); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("Caddyfile: got %q, want %q", got, tt.want)
			}
			if got := notifyLines(t, fromJSON); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("JSON: got %q, want %q", got, tt.want)
			}
		})
	}

	if out := adaptNotify(t, auth+"auth_concurrency 8"); !strings.Contains(out, `"auth_concurrency":8`) {
		t.Errorf("adapted to %s", out)
	}
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(":8080 {\n\tnotify {\n"+auth+"\t\tauth_concurrency many\n\t}\n}\n"),
		map[string]any{"filename": "Caddyfile"})
	if err == nil || !strings.Contains(err.Error(), `auth_concurrency: "many" is not a whole number, at Caddyfile:4`) {
		t.Errorf("adapting auth_concurrency many: %v", err)
	}
	h := Handler{AuthURL: "http://a/"}
	h.applyDefaults()
	if h.AuthConcurrency != DefaultAuthConcurrency {
		t.Errorf("default auth_concurrency %d, want %d", h.AuthConcurrency, DefaultAuthConcurrency)
	}
}
