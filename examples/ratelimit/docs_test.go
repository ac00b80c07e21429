// Package ratelimit tests the rate limit docs/security.md
// shows in front of notify (github.com/mholt/caddy-ratelimit): the snippet
// is read from the page itself, so the two cannot drift apart.
package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mholt/caddy-ratelimit"

	_ "github.com/caddy-notify/notify"
)

// readmeSnippet returns the Caddyfile block of the README that uses
// rate_limit, with its indentation removed.
func readmeSnippet(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(raw), "```caddyfile\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if !strings.Contains(block, "rate_limit") {
			continue
		}
		var lines []string
		for _, l := range strings.Split(block, "\n") {
			lines = append(lines, strings.TrimPrefix(l, "  "))
		}
		return strings.TrimRight(strings.Join(lines, "\n"), " \n") + "\n"
	}
	t.Fatal("no rate_limit snippet in docs/security.md")
	return ""
}

func adapt(t *testing.T, caddyfile string) []byte {
	t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting:\n%s\n%v", caddyfile, err)
	}
	if len(warnings) > 0 {
		t.Fatalf("adapter warnings %v:\n%s", warnings, caddyfile)
	}
	return cfg
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The snippet as printed adapts, orders rate_limit before notify and is a
// valid config.
func TestReadmeSnippetIsValid(t *testing.T) {
	snippet := readmeSnippet(t)
	cfg := adapt(t, snippet)
	rl, nt := strings.Index(string(cfg), `"handler":"rate_limit"`), strings.Index(string(cfg), `"handler":"notify"`)
	if rl < 0 || nt < 0 || rl > nt {
		t.Fatalf("rate_limit must come before notify:\n%s", cfg)
	}
	var c caddy.Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&c); err != nil {
		t.Fatal(err)
	}
}

// The snippet running: the 101st request from one address within the
// window gets 429, and the auth API never hears of it.
func TestReadmeSnippetLimits(t *testing.T) {
	var calls atomic.Int64
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(auth.Close)
	redisPort := freePort(t)
	redis := exec.Command("redis-server", "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := redis.Start(); err != nil {
		t.Fatalf("starting redis-server (apt-get install -y redis-server): %v", err)
	}
	t.Cleanup(func() { _ = redis.Process.Kill(); _ = redis.Wait() })

	port := freePort(t)
	snippet := readmeSnippet(t)
	snippet = strings.Replace(snippet, "example.com {", fmt.Sprintf("http://127.0.0.1:%d {", port), 1)
	snippet = strings.Replace(snippet, "auth_url https://app.internal/api/v1/is_user_auth/",
		fmt.Sprintf("auth_url %s\n\t\tredis redis://127.0.0.1:%d", auth.URL, redisPort), 1)
	snippet = strings.Replace(snippet, "{\n", "{\n\tadmin off\n\tpersist_config off\n", 1)
	if err := caddy.Load(adapt(t, snippet), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	url := fmt.Sprintf("http://127.0.0.1:%d/events", port)
	status := func() int {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer unknown")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Redis may take a moment: 503 until the subscription is up.
	deadline := time.Now().Add(10 * time.Second)
	for status() == http.StatusServiceUnavailable && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for i := 2; i <= 100; i++ {
		if got := status(); got != http.StatusUnauthorized {
			t.Fatalf("request %d: status %d, want 401 from the auth API", i, got)
		}
	}
	before := calls.Load()
	if got := status(); got != http.StatusTooManyRequests {
		t.Fatalf("request 101 within the window: status %d, want 429", got)
	}
	if calls.Load() != before {
		t.Error("the auth API was asked about a rate-limited request")
	}
}
