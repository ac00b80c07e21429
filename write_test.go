package notify

import (
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-notify/notify/internal/testkit"
)

// A config stop ends a hijacked stream whose writer is blocked on a client
// that stopped reading, within a second: no goroutine waits for the stop,
// the handler's connWatch closes the connection under the writer.
func TestStopEndsABlockedHijackedWrite(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	cfg := &caddyConfig{redis: rs, auth: auth, vars: map[string]string{"heartbeat": "15s"}, routes: `
	notify {
		redis {redis}
		auth_url {auth}
		heartbeat {heartbeat}
		max_message_size 2MiB
		queue_bytes 64MiB
		queue_size 1000
		write_timeout 1h
	}`}
	base := cfg.load(t)
	openBefore := testutil.ToFloat64(notifyMetrics.StreamsOpen)

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer alice-token\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "stream registered", func() bool { return openSubscribers() == 1 })
	// More than the socket buffers hold: the writer blocks in a write.
	msg := bigMessage("alice", 0, 1_000_000)
	for range 24 {
		rs.Publish(t, defaultChannel, msg)
	}
	testkit.WaitFor(t, 5*time.Second, "a writer blocked on the client", func() bool {
		n, _ := goroutinesIn(regexp.MustCompile(`stream\.\(\*Stream\)\.(start|resume)`))
		return n == 1
	})
	time.Sleep(200 * time.Millisecond) // it stays blocked

	cfg.vars["heartbeat"] = "20s" // a reload stops the old config
	if err := cfg.reload(); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, time.Second, "the blocked stream ended", func() bool {
		return testutil.ToFloat64(notifyMetrics.StreamsOpen) == openBefore
	})
}
