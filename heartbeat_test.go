package notify

import (
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

func TestHeartbeat(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify /fast {
		redis {redis}
		auth_url {auth}
		heartbeat 100ms
		retry 1500ms
	}
	notify /off {
		redis {redis}
		auth_url {auth}
		heartbeat 0
	}`)
	fast := testkit.OpenStream(t, testkit.Request(t, base+"/fast", "alice-token"))
	off := testkit.OpenStream(t, testkit.Request(t, base+"/off", "alice-token"))

	ping := testkit.Frame{Kind: testkit.FrameComment, Comment: " ping"}
	fast.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "1500"}, ping, ping, ping)
	off.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
	// With heartbeats off, the only thing that arrives is the event.
	time.Sleep(300 * time.Millisecond) // three intervals of /fast
	rs.Publish(t, defaultChannel, `{"recipient_id":"alice"}`)
	off.Expect(t, testkit.Frame{Kind: testkit.FrameEvent, Data: `{"recipient_id":"alice"}`})
}
