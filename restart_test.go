package notify

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// A Caddy that starts after entries were trimmed or deleted must tell a
// resuming client what it lost at once: a reset naming why, then what is
// left, never a silent gap and never a 503 that only new traffic clears.
func TestResumeAfterStartOnATrimmedStream(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, rs *testkit.Redis, ids []string)
		from   int // index into ids of the client's Last-Event-ID
		want   []string
	}{
		{
			name: "MAXLEN 3",
			change: func(t *testing.T, rs *testkit.Redis, _ []string) {
				c := rs.Client()
				defer c.Close()
				c.XTrimMaxLen(t.Context(), testStream, 3)
			},
			from: 1,
			want: []string{"reset history_truncated", "8", "9", "10"},
		},
		{
			name: "MAXLEN 0",
			change: func(t *testing.T, rs *testkit.Redis, _ []string) {
				c := rs.Client()
				defer c.Close()
				c.XTrimMaxLen(t.Context(), testStream, 0)
			},
			from: 4,
			want: []string{"reset history_truncated id=10"},
		},
		{
			name: "newest deleted, resume before it",
			change: func(t *testing.T, rs *testkit.Redis, ids []string) {
				c := rs.Client()
				defer c.Close()
				c.XDel(t.Context(), testStream, ids[9])
			},
			from: 8,
			want: []string{"reset history_truncated id=10"},
		},
		{
			name: "newest deleted, resume from it",
			change: func(t *testing.T, rs *testkit.Redis, ids []string) {
				c := rs.Client()
				defer c.Close()
				c.XDel(t.Context(), testStream, ids[9])
			},
			from: 9,
			want: []string{},
		},
		{
			// The old entries went with the key: nothing in the new
			// stream's XINFO says so, but an ID older than its first
			// entry cannot be resumed from without loss.
			name: "deleted and recreated",
			change: func(t *testing.T, rs *testkit.Redis, _ []string) {
				c := rs.Client()
				defer c.Close()
				c.Del(t.Context(), testStream)
				// A later millisecond: the new stream's IDs are above
				// the old ones (in the same one, they could repeat).
				time.Sleep(2 * time.Millisecond)
				xadd(t, c, numberedMsg("alice", 11))
			},
			from: 4,
			want: []string{"reset history_truncated", "message 11"},
		},
		{
			name: "oldest deleted, resume before it",
			change: func(t *testing.T, rs *testkit.Redis, ids []string) {
				c := rs.Client()
				defer c.Close()
				c.XDel(t.Context(), testStream, ids[1])
			},
			from: 0,
			want: []string{"reset history_truncated", "3", "4", "5", "6", "7", "8", "9", "10"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := testkit.StartRedis(t)
			c := rs.Client()
			t.Cleanup(func() { c.Close() })
			var ids []string
			for i := 1; i <= 10; i++ {
				ids = append(ids, xadd(t, c, numberedMsg("alice", i)))
			}
			tt.change(t, rs, ids)
			url := streamSetup(t, rs).base() + "/events"

			req := testkit.Request(t, url, "alice-token")
			req.Header.Set("Last-Event-ID", ids[tt.from])
			start := time.Now()
			s := testkit.OpenStream(t, req)
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("the stream took %s to open", d)
			}
			// A marker published now ends what the client must see first.
			marker := xadd(t, c, `{"recipient_id":"alice","n":0}`)
			var got []string
			for {
				ev := s.Next(t, 5*time.Second)
				if ev.ID == marker {
					break
				}
				got = append(got, describe(ev, ids))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
			}
		})
	}
}

// describe names an event for comparison: "reset <reason>[ id=<n>]" or the
// message number, where n is the 1-based position of the id in ids.
func describe(ev testkit.Frame, ids []string) string {
	pos := func(id string) string {
		for i, x := range ids {
			if x == id {
				return strconv.Itoa(i + 1)
			}
		}
		return id
	}
	if ev.Name == "reset" {
		var r struct{ Reason string }
		_ = json.Unmarshal([]byte(ev.Data), &r)
		s := "reset " + r.Reason
		if ev.ID != "" {
			s += " id=" + pos(ev.ID)
		}
		return s
	}
	var m numbered
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil || m.N < 1 {
		return "event " + ev.Data
	}
	if m.N > len(ids) {
		return "message " + strconv.Itoa(m.N) // published by the case itself
	}
	if ids[m.N-1] != ev.ID {
		return "message " + strconv.Itoa(m.N) + " with id " + ev.ID
	}
	return strconv.Itoa(m.N)
}
