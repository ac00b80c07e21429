package hub

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/sse"
	"github.com/caddy-notify/notify/internal/streamid"
)

const testStream = "events"

// newTestSet starts the hubs of src on a client of the Redis at url; they
// and the client are stopped when the test ends.
func newTestSet(t testing.TB, url string, src Source, opts Options) *Set {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(o)
	if src.MaxMessageSize == 0 {
		src.MaxMessageSize = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	s := NewSet(client, src, opts)
	t.Cleanup(func() {
		_ = s.Stop()
		_ = client.Close()
	})
	return s
}

// xadd appends a message to the test stream and returns its entry ID.
func xadd(t testing.TB, c *redis.Client, msg string) string {
	t.Helper()
	id, err := c.XAdd(t.Context(), &redis.XAddArgs{Stream: testStream, Values: []any{"data", msg}}).Result()
	if err != nil {
		t.Fatalf("XADD: %v", err)
	}
	return id
}

func numberedMsg(user string, n int) string {
	return fmt.Sprintf(`{"recipient_id":%q,"n":%d}`, user, n)
}

// frameID is the id field of a frame, or "" when it has none.
func frameID(f *sse.Frame) string {
	b, ok := bytes.CutPrefix(f.Bytes(), []byte("id: "))
	if !ok {
		return ""
	}
	id, _, _ := bytes.Cut(b, []byte("\n"))
	return string(id)
}

// frameIDs is frameID of each frame.
func frameIDs(fs []*sse.Frame) []streamid.ID {
	ids := make([]streamid.ID, len(fs))
	for i, f := range fs {
		ids[i], _ = streamid.Parse(frameID(f))
	}
	return ids
}

// chanWaker stands for a stream's writer in tests: a wake is a signal on
// the channel.
type chanWaker chan struct{}

func (c chanWaker) Wake() {
	select {
	case c <- struct{}{}:
	default:
	}
}

// parkedSubscriber returns a subscriber whose writer is parked, and the
// channel its wakes signal: as a stream's writer is woken, something was
// queued (or the queue closed).
func parkedSubscriber(user string) (*index.Subscriber, chanWaker) {
	s := index.NewSubscriber(user, false, index.NewOwner(index.QueueLimit{Events: 16}))
	w := make(chanWaker, 1)
	s.SetWaker(w)
	s.Take(nil) // nothing queued: the writer parks
	return s, w
}

// drain returns the wire text of the frames queued to s, as a writer would
// take them, until the queue is empty.
func drain(s *index.Subscriber) []string {
	var out []string
	for {
		batch, _, open := s.Take(nil)
		if !open || len(batch) == 0 {
			return out
		}
		for _, f := range batch {
			out = append(out, string(f.Bytes()))
		}
	}
}
