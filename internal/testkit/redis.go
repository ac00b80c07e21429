// Package testkit is what the tests of every package share: a real
// redis-server on a free port (Redis), a stub of the site's auth API
// (AuthAPI), a reader of event streams (Stream), an nginx to put in front
// (Nginx), and waiting for a condition (WaitFor). It imports nothing of Caddy, so that the engine's
// tests build without it; only tests import it.
package testkit

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Redis is a real redis-server process owned by one test.
type Redis struct {
	t        testing.TB
	Port     int
	Password string   // from --requirepass, for the test's own clients
	Args     []string // the command line; a test may change it before Start
	cmd      *exec.Cmd
	done     chan struct{}
}

// NewRedis prepares a redis-server on port without starting it: a test
// that needs Redis down at first calls Start later. extra are further
// command-line options. The server is killed when the test ends.
func NewRedis(t testing.TB, port int, extra ...string) *Redis {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed (apt-get install -y redis-server): %v", err)
	}
	rs := &Redis{t: t, Port: port}
	for i, a := range extra {
		if a == "--requirepass" && i+1 < len(extra) {
			rs.Password = extra[i+1]
		}
	}
	rs.Args = append([]string{path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--logfile", "redis.log"}, extra...)
	t.Cleanup(rs.Stop)
	return rs
}

// StartRedis starts redis-server on a free loopback port; it is killed
// when the test ends. extra are further command-line options.
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	rs := NewRedis(t, FreePort(t), extra...)
	rs.Start()
	return rs
}

// Addr is the server's host:port.
func (rs *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(rs.Port) }

// URL is the server's redis:// URL, without its password.
func (rs *Redis) URL() string { return "redis://" + rs.Addr() }

// Start starts the server and waits until it answers PING.
func (rs *Redis) Start() {
	rs.t.Helper()
	rs.cmd = exec.Command(rs.Args[0], rs.Args[1:]...)
	if err := rs.cmd.Start(); err != nil {
		rs.t.Fatalf("starting redis-server: %v", err)
	}
	rs.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(rs.cmd, rs.done)
	c := rs.Client()
	defer c.Close()
	WaitFor(rs.t, 10*time.Second, "redis-server to answer PING", func() bool {
		return c.Ping(context.Background()).Err() == nil
	})
}

// Stop kills the server with SIGKILL; it may be started again on the same
// port.
func (rs *Redis) Stop() {
	if rs.cmd == nil {
		return
	}
	_ = rs.cmd.Process.Kill()
	<-rs.done
	rs.cmd = nil
}

// Running reports whether the server was started and not stopped.
func (rs *Redis) Running() bool { return rs.cmd != nil }

// Client returns a new client of the server that never retries a command:
// a retried PUBLISH or XADD would publish twice. The caller closes it.
func (rs *Redis) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: rs.Addr(), Password: rs.Password, MaxRetries: -1})
}

// Publish sends payload to channel and returns how many subscribers got it.
func (rs *Redis) Publish(t testing.TB, channel, payload string) int64 {
	t.Helper()
	c := rs.Client()
	defer c.Close()
	n, err := c.Publish(context.Background(), channel, payload).Result()
	if err != nil {
		t.Fatalf("PUBLISH: %v", err)
	}
	return n
}

// WaitFor polls cond until it holds or the timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
