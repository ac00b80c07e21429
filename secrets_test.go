package notify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// The Redis password never reaches a log line when the URL comes from a
// placeholder, with Caddy's logger at DEBUG, across a start, a reload and a
// Redis outage. Written inline, it appears in Caddy's own debug dump of the
// config, which the module cannot prevent: that is why the README says to
// use {env.*} or {file.*}.
func TestRedisPasswordNeverLogged(t *testing.T) {
	const password = "s3cret-pw-7f3a"
	tests := []struct {
		name   string
		redis  func(t *testing.T, url string) string // the redis subdirective's argument
		logged bool
	}{
		{"env placeholder", func(t *testing.T, url string) string {
			t.Setenv("NOTIFY_TEST_REDIS_URL", url)
			return "{env.NOTIFY_TEST_REDIS_URL}"
		}, false},
		{"file placeholder", func(t *testing.T, url string) string {
			path := filepath.Join(t.TempDir(), "redis-url")
			if err := os.WriteFile(path, []byte(url), 0o600); err != nil {
				t.Fatal(err)
			}
			return "{file." + path + "}"
		}, false},
		{"inline", func(_ *testing.T, url string) string { return url }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := testkit.StartRedis(t, "--requirepass", password)
			auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
			logFile := filepath.Join(t.TempDir(), "caddy.log")
			url := strings.Replace(rs.URL(), "redis://", "redis://:"+password+"@", 1)
			cfg := &caddyConfig{
				redis: rs, auth: auth, autoHTTPS: true,
				log:  "\t\toutput file {log}\n\t\tlevel DEBUG",
				vars: map[string]string{"log": logFile, "url": tt.redis(t, url)},
				routes: `
	notify {
		redis {url}
		auth_url {auth}
	}`,
			}
			base := cfg.load(t)
			logged := func() string {
				b, _ := os.ReadFile(logFile)
				return string(b)
			}
			testkit.OpenStream(t, testkit.Request(t, base+"/", "alice-token"))
			if err := cfg.reload(); err != nil { // keeps the stream
				t.Fatal(err)
			}
			rs.Stop()
			testkit.WaitFor(t, 10*time.Second, "the outage logged", func() bool {
				return strings.Contains(logged(), "redis subscription unavailable")
			})
			rs.Start()
			testkit.WaitFor(t, 10*time.Second, "the subscription back", func() bool {
				return strings.Count(logged(), "redis subscription established") >= 2
			})
			log := logged()
			if got := strings.Contains(log, password); got != tt.logged {
				t.Errorf("password in the log: %v, want %v", got, tt.logged)
			}
			if !strings.Contains(log, `"msg":"adjusted config"`) {
				t.Error("Caddy's debug dump of the config was not logged: the check proves nothing")
			}
		})
	}
}
