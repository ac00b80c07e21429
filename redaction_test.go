package notify

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-notify/notify/internal/testkit"
)

// TestQueryTokenRedactedFromAccessLog checks the log filter the README
// recommends with token_query: the access log keeps the request but not the
// token.
func TestQueryTokenRedactedFromAccessLog(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	logFile := filepath.Join(t.TempDir(), "access.log")
	cfg := &caddyConfig{redis: rs, auth: auth, vars: map[string]string{"log": logFile}, routes: `
	log {
		output file {log}
		format filter {
			request>uri query {
				replace access_token REDACTED
			}
		}
	}
	notify {
		redis {redis}
		auth_url {auth}
		token_query access_token
	}`}
	s := testkit.OpenStream(t, testkit.Request(t, cfg.load(t)+"/?access_token=alice-token&x=1", ""))
	s.Close()
	<-s.Done()
	var log string
	testkit.WaitFor(t, 5e9, "the access log entry", func() bool {
		b, _ := os.ReadFile(logFile)
		log = string(b)
		return strings.Contains(log, "access_token=REDACTED")
	})
	if strings.Contains(log, "alice-token") {
		t.Fatalf("token in the access log:\n%s", log)
	}
}

// TestTokensNeverLogged runs every refusal path with Caddy's default logger
// at DEBUG and checks that no token ever reaches the log.
func TestTokensNeverLogged(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, map[string]testkit.AuthReply{
		"secret-ok":     {Status: 200, Body: `{"user_id":"alice"}`},
		"secret-500":    {Status: 500, Body: `{"token":"secret-500"}`},
		"secret-nouser": {Status: 200, Body: `{"echo":"secret-nouser"}`},
		"secret-403":    {Status: 403, Body: `{}`},
	})
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	dead := fmt.Sprintf("http://127.0.0.1:%d/", testkit.FreePort(t))
	cfg := &caddyConfig{
		redis: rs,
		auth:  auth,
		vars:  map[string]string{"log": logFile, "dead": dead},
		log: `
		level DEBUG
		output file {log}`,
		routes: `
	log {
		output file {log}
	}
	notify /events {
		redis {redis}
		auth_url {auth}
		token_query t
	}
	notify /dead {
		redis {redis}
		auth_url {dead}
	}`,
	}
	base := cfg.load(t)
	for _, tok := range []string{"secret-ok", "secret-500", "secret-nouser", "secret-403", "secret-unknown"} {
		for _, path := range []string{"/events", "/dead"} {
			req := testkit.Request(t, base+path, tok)
			req.Header.Set("Cookie", "session="+tok)
			resp, err := testkit.StreamClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	resp, err := testkit.StreamClient.Get(base + "/events?t=secret-query")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	testkit.WaitFor(t, 5e9, "log entries", func() bool {
		b, _ := os.ReadFile(logFile)
		// One line per handler: failures are logged at most once per
		// failureLogEvery (TestAuthFailuresLoggedOncePerInterval).
		return strings.Count(string(b), "auth api call failed") >= 2
	})
	b, _ := os.ReadFile(logFile)
	for line := range strings.Lines(string(b)) {
		// The query token is only in the access log's uri, which the
		// README tells users to redact; every other mention is a leak.
		if strings.Contains(line, "secret-") && !strings.Contains(line, `"uri":"/events?t=secret-query"`) {
			t.Errorf("token in the log: %s", line)
		}
	}
}
