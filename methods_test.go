package notify

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// TestMethodsAndCORS covers, through Caddy, the CORS headers of a real 200
// stream and HEAD requests, whose body the server drops. The refusals that
// need neither are in TestRefusals.
func TestMethodsAndCORS(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify /plain {
		redis {redis}
		auth_url {auth}
	}
	notify /listed {
		redis {redis}
		auth_url {auth}
		cors https://app.example.com
		cors https://admin.example.com http://localhost:3000
	}
	notify /any {
		redis {redis}
		auth_url {auth}
		cors *
	}`)

	tests := []struct {
		name       string
		method     string
		path       string
		headers    map[string]string
		status     int
		wantHeader map[string]string // "" means the header must be absent
		authCalls  int64
	}{
		{"listed origin on a stream", "GET", "/listed", map[string]string{
			"Origin": "http://localhost:3000", "Authorization": "Bearer alice-token",
		}, 200, map[string]string{"Access-Control-Allow-Origin": "http://localhost:3000",
			"Access-Control-Allow-Credentials": "true", "Vary": "Origin"}, 1},
		{"other origin gets no cors headers", "GET", "/listed", map[string]string{
			"Origin": "https://evil.example", "Authorization": "Bearer alice-token",
		}, 200, map[string]string{"Access-Control-Allow-Origin": "", "Vary": "Origin"}, 1},
		{"any origin never with credentials", "GET", "/any", map[string]string{
			"Origin": "https://evil.example", "Authorization": "Bearer alice-token",
		}, 200, map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": ""}, 1},
		{"head authenticates and sends no body", "HEAD", "/plain", map[string]string{"Authorization": "Bearer alice-token"},
			200, map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}, 1},
		{"head without credentials", "HEAD", "/plain", nil, 401,
			map[string]string{"WWW-Authenticate": "Bearer", "Content-Type": "application/json"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, base+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			before := auth.Calls()
			resp, err := testkit.StreamClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			for k, v := range tt.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.method == "HEAD" {
				body, _ := io.ReadAll(resp.Body)
				if len(body) != 0 {
					t.Errorf("HEAD body %q", body)
				}
			}
			if calls := auth.Calls() - before; calls != tt.authCalls {
				t.Errorf("auth API called %d times, want %d", calls, tt.authCalls)
			}
		})
	}
	testkit.WaitFor(t, time.Second, "HEAD and closed streams leave no subscriber", func() bool { return openSubscribers() == 0 })
}
