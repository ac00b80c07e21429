package notify

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-notify/notify/internal/testkit"
)

// provisioned sets h up as Provision does, without a Caddy config (whose
// events app Provision needs): its own hub subscribes to a channel on rs,
// which the caller may leave unstarted. A request that gets past every
// refusal then waits redisWait for Redis and gets 503.
func provisioned(t *testing.T, h *Handler, rs *testkit.Redis) *Handler {
	t.Helper()
	h.Redis = rs.URL()
	h.applyDefaults()
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	rc, err := h.redisConfig()
	if err != nil {
		t.Fatal(err)
	}
	h.logger = zap.NewNop()
	h.setUp(rc)
	t.Cleanup(func() { _ = h.Cleanup() })
	return h
}

// TestRefusals calls ServeHTTP directly with every request the handler
// refuses before it looks at Redis or calls the auth API: wrong methods,
// CORS preflights, missing or malformed tokens, malformed Last-Event-ID.
// Redis is down and the auth API counts its calls, so a refusal that came
// too late shows as a 503 or as an auth call.
func TestRefusals(t *testing.T) {
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	rs := testkit.NewRedis(t, testkit.FreePort(t)) // never started
	listed := []string{"https://app.example.com", "https://admin.example.com", "http://localhost:3000"}
	handlers := map[string]*Handler{
		"plain":  provisioned(t, &Handler{AuthURL: auth.URL}, rs),
		"listed": provisioned(t, &Handler{AuthURL: auth.URL, CORS: listed}, rs),
		"any":    provisioned(t, &Handler{AuthURL: auth.URL, CORS: []string{"*"}}, rs),
		"query":  provisioned(t, &Handler{AuthURL: auth.URL, TokenQuery: "access_token", TokenCookie: "session"}, rs),
		"stream": provisioned(t, &Handler{AuthURL: auth.URL, Source: Source{Stream: "events"}}, rs),
	}
	const (
		preflightHeaders = "Authorization, Last-Event-ID, Cache-Control"
		malformedID      = "Malformed Last-Event-ID: expected <ms>-<seq>."
	)
	challenge := map[string]string{"WWW-Authenticate": "Bearer"} // a token refused before the auth API
	type refusal struct {
		name    string
		handler string
		method  string
		target  string            // path and query
		header  map[string]string // request headers
		status  int
		error   string            // the JSON body's error; "" for an empty body
		reply   map[string]string // response headers besides the JSON body's own
	}
	tests := []refusal{
		// Methods
		{name: "post refused before auth", handler: "plain", method: "POST", target: "/",
			header: map[string]string{"Authorization": "Bearer alice-token"},
			status: 405, error: "Method not allowed.", reply: map[string]string{"Allow": "GET, HEAD"}},
		{name: "delete with cors", handler: "listed", method: "DELETE", target: "/",
			status: 405, error: "Method not allowed.", reply: map[string]string{"Allow": "GET, HEAD, OPTIONS"}},
		{name: "put with cors *", handler: "any", method: "PUT", target: "/",
			header: map[string]string{"Origin": "https://evil.example"},
			status: 405, error: "Method not allowed.", reply: map[string]string{"Allow": "GET, HEAD, OPTIONS"}},
		{name: "options without cors", handler: "plain", method: "OPTIONS", target: "/",
			header: map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"},
			status: 405, error: "Method not allowed.", reply: map[string]string{"Allow": "GET, HEAD"}},

		// CORS preflight
		{name: "preflight listed origin", handler: "listed", method: "OPTIONS", target: "/",
			header: map[string]string{
				"Origin": "https://admin.example.com", "Access-Control-Request-Method": "GET",
				"Access-Control-Request-Headers": "authorization,last-event-id",
			},
			status: 204, reply: map[string]string{
				"Access-Control-Allow-Origin":      "https://admin.example.com",
				"Access-Control-Allow-Credentials": "true",
				"Access-Control-Allow-Methods":     "GET, HEAD",
				"Access-Control-Allow-Headers":     preflightHeaders,
				"Access-Control-Max-Age":           "86400",
				"Vary":                             "Origin",
			}},
		{name: "preflight other origin", handler: "listed", method: "OPTIONS", target: "/",
			header: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
			status: 403, error: "Origin not allowed.", reply: map[string]string{"Vary": "Origin"}},
		{name: "preflight without origin", handler: "listed", method: "OPTIONS", target: "/",
			status: 403, error: "Origin not allowed.", reply: map[string]string{"Vary": "Origin"}},
		{name: "preflight any origin", handler: "any", method: "OPTIONS", target: "/",
			header: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
			status: 204, reply: map[string]string{
				"Access-Control-Allow-Origin":  "*",
				"Access-Control-Allow-Methods": "GET, HEAD",
				"Access-Control-Allow-Headers": preflightHeaders,
				"Access-Control-Max-Age":       "86400",
			}},
		{name: "preflight without origin, cors *", handler: "any", method: "OPTIONS", target: "/",
			status: 403, error: "Origin not allowed."},

		// Tokens
		{name: "no credentials", handler: "plain", method: "GET", target: "/",
			status: 401, error: "Credentials are not provided.", reply: challenge},
		{name: "empty authorization", handler: "plain", method: "GET", target: "/",
			header: map[string]string{"Authorization": ""},
			status: 401, error: "Credentials are not provided.", reply: challenge},
		{name: "bearer without token", handler: "plain", method: "GET", target: "/",
			header: map[string]string{"Authorization": "Bearer "},
			status: 401, error: "Credentials are not provided.", reply: challenge},
		{name: "basic scheme", handler: "plain", method: "GET", target: "/",
			header: map[string]string{"Authorization": "Basic YWxpY2U6cHc="},
			status: 401, error: "Incorrect token type.", reply: challenge},
		{name: "token scheme", handler: "plain", method: "GET", target: "/",
			header: map[string]string{"Authorization": "Token abc"},
			status: 401, error: "Incorrect token type.", reply: challenge},
		{name: "control characters in a query token", handler: "query", method: "GET",
			target: "/?access_token=alice-token%0D%0AX-Evil:%201",
			status: 401, error: "Invalid token.", reply: challenge},
		{name: "a non-bearer header hides query and cookie", handler: "query", method: "GET",
			target: "/?access_token=alice-token",
			header: map[string]string{"Authorization": "Basic eDp5", "Cookie": "session=alice-token"},
			status: 401, error: "Incorrect token type.", reply: challenge},
		{name: "query and cookie ignored when not configured", handler: "plain", method: "GET",
			target: "/?access_token=alice-token", header: map[string]string{"Cookie": "session=alice-token"},
			status: 401, error: "Credentials are not provided.", reply: challenge},
		{name: "listed origin on an error", handler: "listed", method: "GET", target: "/",
			header: map[string]string{"Origin": "http://localhost:3000"},
			status: 401, error: "Credentials are not provided.", reply: map[string]string{
				"WWW-Authenticate":                 "Bearer",
				"Access-Control-Allow-Origin":      "http://localhost:3000",
				"Access-Control-Allow-Credentials": "true",
				"Vary":                             "Origin",
			}},

		// Last-Event-ID
		{name: "malformed last_event_id query", handler: "stream", method: "GET", target: "/?last_event_id=abc",
			header: map[string]string{"Authorization": "Bearer alice-token"}, status: 400, error: malformedID},
		// Pub/sub mode has no history: it ignores the ID and gets as far
		// as Redis.
		{name: "pub/sub mode ignores Last-Event-ID", handler: "plain", method: "GET", target: "/",
			header: map[string]string{"Authorization": "Bearer alice-token", "Last-Event-ID": "abc"},
			status: 503, error: "Notifications are temporarily unavailable.", reply: map[string]string{"Retry-After": "5"}},
	}
	for _, id := range []string{"abc", "12", "12-", "-3", "1-2-3", "1.5-0", "1-0x1", "+1-0", "1 -0", "99999999999999999999999-0"} {
		tests = append(tests, refusal{name: "malformed Last-Event-ID " + id, handler: "stream", method: "GET", target: "/",
			header: map[string]string{"Authorization": "Bearer alice-token", "Last-Event-ID": id},
			status: 400, error: malformedID})
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.WithValue(t.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
			req := httptest.NewRequestWithContext(ctx, tt.method, "http://127.0.0.1"+tt.target, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			if err := handlers[tt.handler].ServeHTTP(rec, req, nil); err != nil {
				t.Fatalf("ServeHTTP returned %v", err)
			}

			if rec.Code != tt.status {
				t.Errorf("status %d, want %d", rec.Code, tt.status)
			}
			want := http.Header{}
			for k, v := range tt.reply {
				want.Set(k, v)
			}
			if tt.error != "" {
				want.Set("Content-Type", "application/json")
				want.Set("Cache-Control", "no-store")
				want.Set("Content-Length", strconv.Itoa(rec.Body.Len()))
			}
			if got := rec.Header(); !maps.EqualFunc(got, want, slices.Equal) {
				t.Errorf("headers\n%v\nwant\n%v", got, want)
			}
			body := rec.Body.String()
			if tt.error == "" {
				if body != "" {
					t.Errorf("body %q, want none", body)
				}
			} else {
				var got map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || len(got) != 1 || got["error"] != tt.error {
					t.Errorf("body %q, want {\"error\": %q}", body, tt.error)
				}
			}
			if n := auth.Calls(); n != 0 {
				t.Errorf("auth API called %d times", n)
			}
		})
	}
}
