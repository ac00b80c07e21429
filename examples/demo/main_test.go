package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runMainEnv, set in the environment, makes the test binary run the demo's
// main instead of the tests: TestStopSignal starts it so as a process of its
// own, the way `make demo` runs the demo binary.
const runMainEnv = "NOTIFY_DEMO_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0) // as the demo binary does when main returns
	}
	os.Exit(m.Run())
}

// TestStopSignal starts the demo as a process, waits for its banner, sends
// it SIGINT (Ctrl-C) or SIGTERM, and checks that it stops cleanly with exit
// status 0: `make demo` passes that status on, and a non-zero one made make
// report "Error 1" after a clean stop.
func TestStopSignal(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(self, "-addr", "127.0.0.1:0", "-miniredis-addr", "127.0.0.1:0", "-log-level", "ERROR")
			cmd.Env = append(os.Environ(), runMainEnv+"=1", "REDIS_URL=", "DEMO_ADDR=")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			ready := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					if strings.Contains(sc.Text(), "Press Ctrl-C to stop") {
						close(ready)
						break
					}
				}
				for sc.Scan() {
				}
				exited <- cmd.Wait()
			}()
			select {
			case <-ready:
			case err := <-exited:
				t.Fatalf("the demo exited before it was ready (%v); stderr:\n%s", err, &stderr)
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Fatalf("the demo printed no banner within 30s; stderr:\n%s", &stderr)
			}

			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					t.Fatalf("after %v the demo exited with %v, want status 0; stderr:\n%s", sig, exit.ProcessState, &stderr)
				}
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Fatalf("the demo did not stop within 15s of %v; stderr:\n%s", sig, &stderr)
			}
			if !strings.Contains(stderr.String(), "demo stopped") {
				t.Fatalf("the demo exited 0 without saying it stopped cleanly; stderr:\n%s", &stderr)
			}
		})
	}
}

// TestBanner pins what the demo prints at start with its defaults: the
// README quotes these lines.
func TestBanner(t *testing.T) {
	var b strings.Builder
	writeBanner(&b, addrs{
		URL:       "http://localhost:8080/",
		Listen:    ":8080",
		RedisURL:  "redis://127.0.0.1:6380",
		RedisAddr: "127.0.0.1:6380",
		Embedded:  true,
		AuthURL:   "http://127.0.0.1:40000/api/v1/is_user_auth/",
	})
	for _, want := range []string{
		"\n  Page       http://localhost:8080/\n",
		"\n  Listening  :8080 on every interface (DEMO_ADDR=127.0.0.1:9000 make demo, or -addr, to change it)\n",
		"\n             mallory (token mallory-token) is refused by the auth API on purpose\n",
		"\n  Redis      embedded miniredis at 127.0.0.1:6380 (set REDIS_URL to use your own Redis)\n",
		"\nPublish a notification for alice (redis-cli: package redis-tools on Debian/Ubuntu):\n" +
			`  redis-cli -p 6380 PUBLISH notifications '{"recipient_id":"alice","text":"hello alice"}'` + "\n",
		"\n" + `  redis-cli -p 6380 PUBLISH notifications '{"recipient_id":"*","text":"hello everyone"}'` + "\n",
		"\n  curl -N -H 'Authorization: Bearer bob-token' http://localhost:8080/events\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the banner lacks %q; it is:\n%s", want, b.String())
		}
	}
}

func TestRedisCLI(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    addrs
		want string
	}{
		{"redis-cli's defaults", addrs{RedisAddr: "127.0.0.1:6379", Embedded: true}, "redis-cli"},
		{"the embedded default", addrs{RedisAddr: "127.0.0.1:6380", Embedded: true}, "redis-cli -p 6380"},
		{"another host", addrs{RedisAddr: "192.0.2.1:6379", Embedded: true}, "redis-cli -h 192.0.2.1"},
		{"IPv6", addrs{RedisAddr: "[::1]:7000", Embedded: true}, "redis-cli -h ::1 -p 7000"},
		{"REDIS_URL, never printed", addrs{RedisURL: "redis://:secret@db:6379/0", RedisAddr: "db:6379"}, `redis-cli -u "$REDIS_URL"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.redisCLI(); got != tc.want {
				t.Errorf("redisCLI() = %q, want %q", got, tc.want)
			}
		})
	}
}
