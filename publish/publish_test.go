package publish

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestPartition(t *testing.T) {
	for _, tt := range []struct {
		id   string
		n    int
		want int
	}{
		{"42", 1, 0},
		{"42", 0, 0},
		{"42", 16, int(crc32.ChecksumIEEE([]byte("42")) % 16)},
		// Fixed values: a change of the function would strand every
		// published message; other languages' examples in the README
		// must compute the same (Python: zlib.crc32(b"42") % 16 == 8).
		{"42", 16, 8},
		{"alice", 16, 7},
		{"bob", 1024, 320},
		{"", 16, 0},
	} {
		if got := Partition(tt.id, tt.n); got != tt.want {
			t.Errorf("Partition(%q, %d) = %d, want %d", tt.id, tt.n, got, tt.want)
		}
	}
	if IntID(-9007199254740993) != "-9007199254740993" {
		t.Error("IntID must keep every digit")
	}
}

func TestPartitions(t *testing.T) {
	if got := Partitions([]string{"42", "alice", "42"}, 16); !slices.Equal(got, []int{7, 8}) {
		t.Errorf("got %v, want [7 8]: distinct, in order", got)
	}
	if got := Partitions([]string{"42", Broadcast}, 4); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Errorf("broadcast: got %v, want every partition", got)
	}
	if got := Partitions([]string{"42"}, 1); !slices.Equal(got, []int{0}) {
		t.Errorf("one partition: got %v", got)
	}
	if Name("n", 3, 16) != "n.3" || Name("n", 0, 1) != "n" {
		t.Error("Name: <base>.<i>, or base alone with one partition")
	}
}

// TestTargetsOfGroups: in pub/sub mode a group message goes to the
// partition of each group and of each recipient, once each; in stream mode
// to every partition; a group named "*" is a name, not a broadcast.
func TestTargetsOfGroups(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialed
	defer c.Close()
	parts := func(ts []Target) (p []int) {
		for _, t := range ts {
			p = append(p, t.Partition)
		}
		return p
	}
	pubsub := &Publisher{Client: c, Channel: "n", Partitions: 16}
	stream := &Publisher{Client: c, Stream: "s", Partitions: 4}
	for _, tt := range []struct {
		name string
		p    *Publisher
		m    Message
		want []int
	}{
		{"group alone", pubsub, Message{Groups: []string{"alice"}}, []int{7}},
		{"group and its user share a partition", pubsub, Message{Recipients: []string{"alice"}, Groups: []string{"alice", "42"}}, []int{7, 8}},
		{"a group named *", pubsub, Message{Groups: []string{"*"}}, []int{Partition("*", 16)}},
		{"stream mode", stream, Message{Groups: []string{"org:7"}}, []int{0, 1, 2, 3}},
		{"stream mode without groups", stream, Message{Recipients: []string{"42"}}, []int{Partition("42", 4)}},
	} {
		ts, err := tt.p.TargetsOf(tt.m)
		if err != nil || !slices.Equal(parts(ts), tt.want) {
			t.Errorf("%s: got %v, %v; want %v", tt.name, parts(ts), err, tt.want)
		}
	}
	if _, err := pubsub.TargetsOf(Message{Groups: []string{"a", ""}}); !errors.Is(err, ErrEmptyGroup) {
		t.Errorf("empty group: %v", err)
	}
	if _, err := pubsub.PublishMessage(t.Context(), Message{Data: []byte(`{}`)}); !errors.Is(err, ErrNoRecipient) {
		t.Errorf("no recipient nor group: %v", err)
	}
}

func TestPublisherRefuses(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialed
	defer c.Close()
	for name, p := range map[string]*Publisher{
		"no client":             {Channel: "n"},
		"channel and stream":    {Client: c, Channel: "n", Stream: "s"},
		"neither":               {Client: c},
		"sharded stream":        {Client: c, Stream: "s", Sharded: true},
		"too many partitions":   {Client: c, Channel: "n", Partitions: 1025},
		"wait without stream":   {Client: c, Channel: "n", WaitReplicas: 1},
		"negative maxlen":       {Client: c, Stream: "s", MaxLen: -1},
		"negative partitions":   {Client: c, Stream: "s", Partitions: -1},
		"negative replica wait": {Client: c, Stream: "s", WaitReplicas: -1},
	} {
		if _, err := p.Publish(t.Context(), []byte(`{}`), "1"); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
	p := &Publisher{Client: c, Channel: "n"}
	if _, err := p.Publish(t.Context(), []byte(`{}`)); !errors.Is(err, ErrNoRecipient) {
		t.Errorf("no recipient: %v", err)
	}
	if _, err := p.Publish(t.Context(), []byte(`{}`), "a", ""); !errors.Is(err, ErrEmptyID) {
		t.Errorf("empty id: %v", err)
	}
	if _, err := p.Publish(t.Context(), nil, "a"); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty message: %v", err)
	}
}

// startRedis runs a redis-server on a free loopback port for one test.
func startRedis(t *testing.T) *redis.Client {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed (apt-get install -y redis-server): %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(t.Context()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not answer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

// TestPublishPubSub publishes to partitioned channels, classic and
// sharded, and checks that each partition's channel gets the message once,
// and only the partitions of its recipients.
func TestPublishPubSub(t *testing.T) {
	c := startRedis(t)
	for _, sharded := range []bool{false, true} {
		t.Run(fmt.Sprintf("sharded=%t", sharded), func(t *testing.T) {
			const n = 4
			ch := fmt.Sprintf("n%t", sharded)
			chans := make([]string, n)
			for i := range chans {
				chans[i] = Name(ch, i, n)
			}
			var sub *redis.PubSub
			if sharded {
				sub = c.SSubscribe(t.Context(), chans...)
			} else {
				sub = c.Subscribe(t.Context(), chans...)
			}
			defer sub.Close()
			for range chans {
				if _, err := sub.ReceiveTimeout(t.Context(), 5*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			p := &Publisher{Client: c, Channel: ch, Partitions: n, Sharded: sharded}
			// "42" and "alice" are on partitions 42%4... whichever: the
			// test asks Partition, as the module does.
			ids := []string{"42", "alice", "42"}
			res, err := p.Publish(t.Context(), []byte(`{"recipient_id":[42,"alice"]}`), ids...)
			if err != nil {
				t.Fatal(err)
			}
			want := Partitions(ids, n)
			if len(res.Targets) != len(want) {
				t.Fatalf("targets %+v, want partitions %v", res.Targets, want)
			}
			got := map[string]int{}
			for i, tg := range res.Targets {
				if tg.Partition != want[i] || tg.Key != chans[want[i]] || tg.Receivers != 1 {
					t.Errorf("target %d: %+v", i, tg)
				}
				m, err := sub.ReceiveTimeout(t.Context(), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				got[m.(*redis.Message).Channel]++
			}
			for _, part := range want {
				if got[chans[part]] != 1 {
					t.Errorf("channel %s got %d copies, want 1", chans[part], got[chans[part]])
				}
			}
			// A broadcast goes to every partition.
			res, err = p.Publish(t.Context(), []byte(`{"recipient_id":"*"}`), Broadcast)
			if err != nil || len(res.Targets) != n {
				t.Fatalf("broadcast: %+v, %v", res, err)
			}
		})
	}
}

// TestPublishStream adds entries to partitioned streams, capped, and with
// a replica wait that cannot be met on a server without replicas.
func TestPublishStream(t *testing.T) {
	c := startRedis(t)
	p := &Publisher{Client: c, Stream: "s", StreamField: "body", Partitions: 8, MaxLen: 100}
	for i := range 300 {
		res, err := p.Publish(t.Context(), []byte(`{"recipient_id":"*"}`), Broadcast)
		if err != nil || len(res.Targets) != 8 || res.Targets[7].ID == "" {
			t.Fatalf("publish %d: %+v, %v", i, res, err)
		}
	}
	for i := range 8 {
		n, err := c.XLen(t.Context(), Name("s", i, 8)).Result()
		if err != nil || n < 100 || n >= 300 {
			t.Errorf("stream %d holds %d entries (%v); want about MAXLEN ~ 100", i, n, err)
		}
	}
	msgs, err := c.XRevRangeN(t.Context(), Name("s", 5, 8), "+", "-", 1).Result()
	if err != nil || len(msgs) != 1 || msgs[0].Values["body"] != `{"recipient_id":"*"}` {
		t.Fatalf("entry: %+v, %v", msgs, err)
	}

	p = &Publisher{Client: c, Stream: "w", WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond}
	res, err := p.Publish(context.WithoutCancel(t.Context()), []byte(`{"recipient_id":1}`), IntID(1))
	if !errors.Is(err, ErrNotReplicated) || len(res.Targets) != 1 || res.Targets[0].ID == "" || res.Targets[0].Replicas != 0 {
		t.Fatalf("WAIT without a replica: %+v, %v; want the entry added and ErrNotReplicated", res, err)
	}
}

// TestPublishBatch publishes several messages in one pipeline: in order,
// each to its own partitions, and nothing at all when one is refused.
func TestPublishBatch(t *testing.T) {
	c := startRedis(t)
	p := &Publisher{Client: c, Stream: "b", Partitions: 4}
	ids := []string{"42", "alice", "bob", "42"}
	msgs := make([]Message, len(ids))
	for i, id := range ids {
		msgs[i] = Message{Data: fmt.Appendf(nil, `{"recipient_id":%q,"n":%d}`, id, i), Recipients: []string{id}}
	}
	msgs = append(msgs, Message{Data: []byte(`{"recipient_id":"*"}`), Recipients: []string{Broadcast}})

	// One refused message: nothing is sent, and the error names it.
	bad := append(slices.Clone(msgs), Message{Data: []byte(`{}`)})
	if res, err := p.PublishBatch(t.Context(), bad); !errors.Is(err, ErrNoRecipient) || err.Error() != "message 5: "+ErrNoRecipient.Error() || res != nil {
		t.Fatalf("a refused message: %v, %v; want ErrNoRecipient for message 5 and no results", res, err)
	}
	if keys, _ := c.Keys(t.Context(), "b*").Result(); len(keys) != 0 {
		t.Fatalf("a refused batch wrote %v", keys)
	}

	res, err := p.PublishBatch(t.Context(), msgs)
	if err != nil || len(res) != len(msgs) {
		t.Fatalf("batch: %+v, %v", res, err)
	}
	for i, id := range ids {
		if len(res[i].Targets) != 1 || res[i].Targets[0].Partition != Partition(id, 4) || res[i].Targets[0].ID == "" {
			t.Errorf("message %d: %+v", i, res[i])
		}
	}
	if len(res[4].Targets) != 4 {
		t.Errorf("the broadcast went to %d partitions, want 4", len(res[4].Targets))
	}
	// Each partition's stream holds its messages in the batch's order.
	for part := range 4 {
		entries, err := c.XRange(t.Context(), Name("b", part, 4), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		var want, got []string
		for _, m := range msgs {
			if slices.Contains(Partitions(m.Recipients, 4), part) {
				want = append(want, string(m.Data))
			}
		}
		for _, e := range entries {
			got = append(got, e.Values["data"].(string))
		}
		if !slices.Equal(got, want) {
			t.Errorf("partition %d holds %q, want %q", part, got, want)
		}
	}
	if res, err := p.PublishBatch(t.Context(), nil); res != nil || err != nil {
		t.Errorf("an empty batch: %v, %v", res, err)
	}
}
