// Package publish puts notifications where the caddy-notify module
// (github.com/caddy-notify/notify) reads them: on a Redis pub/sub channel
// (PUBLISH, or SPUBLISH for sharded pub/sub) or a Redis Stream (XADD), and,
// when the module runs with partitions, on the partition of each recipient.
//
// The module computes a stream's partition with [Partition]; a publisher
// must use the same function, or a message lands where its recipients'
// streams do not read. A message goes once on each distinct partition of
// its recipients, and a broadcast ("*") on every partition, so no stream
// receives it twice.
//
//	pub := &publish.Publisher{Client: rdb, Channel: "notifications", Partitions: 16, Sharded: true}
//	msg, _ := json.Marshal(map[string]any{"recipient_id": []any{42, "alice"}, "type": "order_paid"})
//	res, err := pub.Publish(ctx, msg, "42", "alice")
//
// The recipients passed to Publish must be those of the message's
// recipient field, in their canonical text (see [IntID]): the package does
// not parse the message, so that the module's parser stays the one
// rulebook for what a message names.
//
// A message to groups (the handler's group_field) is published with
// [Publisher.PublishMessage] and its Groups: in pub/sub mode, once on the
// partition of each group ([Partition] of the group name), which every
// instance holding a stream in that group reads; in stream mode, on every
// partition, because a stream reads, and resumes from, its user's
// partition alone.
package publish

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Broadcast is the recipient that addresses every stream of handlers with
// broadcast enabled. A broadcast goes to every partition.
const Broadcast = "*"

// MaxPartitions is the most partitions the module accepts.
const MaxPartitions = 1024

// Partition returns the partition, from 0 to n-1, that reads the messages
// of user id (in pub/sub mode, also those of group id): crc32(id) mod n, with CRC-32 IEEE over the id's canonical
// text (an integer's decimal digits, a string's UTF-8 bytes). With n <= 1
// it is 0.
func Partition(id string, n int) int {
	if n <= 1 {
		return 0
	}
	return int(crc32.ChecksumIEEE([]byte(id)) % uint32(n))
}

// IntID is the canonical text of an integer user id: its decimal digits.
// The module compares ids by this text, so 42 and "42" are one user.
func IntID(id int64) string { return strconv.FormatInt(id, 10) }

// Name returns the channel or stream key that partition part of base is
// read from: base itself when n <= 1, otherwise "<base>.<part>".
func Name(base string, part, n int) string {
	if n <= 1 {
		return base
	}
	return base + "." + strconv.Itoa(part)
}

// Partitions returns the distinct partitions, in increasing order, on
// which a message for recipients must be published: every partition when
// one of them is Broadcast.
func Partitions(recipients []string, n int) []int {
	n = max(n, 1)
	if slices.Contains(recipients, Broadcast) {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		return all
	}
	parts := make([]int, 0, len(recipients))
	for _, id := range recipients {
		parts = append(parts, Partition(id, n))
	}
	slices.Sort(parts)
	return slices.Compact(parts)
}

// Publisher publishes messages for one handler's configuration: its
// channel or stream, its partitions and, for pub/sub, whether it reads
// with sharded pub/sub. Its fields must not change while it is in use.
type Publisher struct {
	// Client is any go-redis client: one server, Sentinel (NewFailoverClient)
	// or Cluster (NewClusterClient).
	Client redis.UniversalClient
	// Channel is the handler's channel (pub/sub mode). Exactly one of
	// Channel and Stream is set.
	Channel string
	// Stream is the handler's stream key (stream mode).
	Stream string
	// StreamField is the entry field holding the message. Default: data.
	StreamField string
	// Partitions is the handler's partitions setting. Default: 1.
	Partitions int
	// Sharded publishes with SPUBLISH, for a handler with sharded on.
	Sharded bool
	// MaxLen caps each stream with MAXLEN ~ MaxLen (approximate trimming,
	// the cheap kind). 0 leaves the streams uncapped; see the module's
	// README on retention.
	MaxLen int64
	// WaitReplicas, in stream mode, makes each XADD wait until that many
	// replicas hold the entry (WAIT), for at most WaitTimeout (0: 1 s).
	// Redis replicates asynchronously: an entry acknowledged without WAIT
	// can be lost if its master dies before a replica has it.
	WaitReplicas int
	WaitTimeout  time.Duration
}

// Result says where a message went: one Target per partition it was
// published on, in increasing partition order.
type Result struct {
	Targets []Target
}

// Target is one partition's copy of a message.
type Target struct {
	Partition int
	// Key is the channel or stream key it was published to.
	Key string
	// Receivers is what PUBLISH or SPUBLISH answered: the subscribers
	// (Caddy instances, one per partition each) that received it. Pub/sub
	// mode only.
	Receivers int64
	// ID is the entry ID XADD gave it. Stream mode only.
	ID string
	// Replicas is how many replicas WAIT said hold the entry, with
	// WaitReplicas.
	Replicas int64
	// Err is why this copy may not have been published, or nil. Publish
	// also returns every copy's error, joined.
	Err error
}

// Errors returned by Publish before anything is sent.
var (
	ErrNoRecipient = errors.New("publish: the message names no recipient and no group")
	ErrEmptyID     = errors.New("publish: a recipient id is empty")
	ErrEmptyGroup  = errors.New("publish: a group name is empty")
	ErrEmpty       = errors.New("publish: the message is empty")
	ErrConfig      = errors.New("publish: set exactly one of Channel and Stream, Sharded only with Channel, WaitReplicas only with Stream, and Partitions from 1 to 1024")
	// ErrNotReplicated is returned, joined to the partition's key, when
	// WAIT saw fewer than WaitReplicas replicas take an entry.
	ErrNotReplicated = errors.New("publish: fewer replicas than WaitReplicas hold the entry")
)

// Validate reports whether the publisher's settings are usable.
func (p *Publisher) Validate() error {
	if p.Client == nil || (p.Channel == "") == (p.Stream == "") || (p.Sharded && p.Stream != "") ||
		p.Partitions < 0 || p.Partitions > MaxPartitions || p.MaxLen < 0 || (p.WaitReplicas != 0 && p.Stream == "") ||
		p.WaitReplicas < 0 {
		return ErrConfig
	}
	return nil
}

// Targets returns the partitions and keys a message for recipients would be
// published to, without sending anything: the first two steps of Publish
// (validate, compute the partitions).
func (p *Publisher) Targets(recipients []string) ([]Target, error) {
	return p.TargetsOf(Message{Recipients: recipients})
}

// TargetsOf returns the partitions and keys m would be published to, by its
// recipients and groups, without sending anything (m.Data is not read).
func (p *Publisher) TargetsOf(m Message) ([]Target, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if len(m.Recipients) == 0 && len(m.Groups) == 0 {
		return nil, ErrNoRecipient
	}
	if slices.Contains(m.Recipients, "") {
		return nil, ErrEmptyID
	}
	if slices.Contains(m.Groups, "") {
		return nil, ErrEmptyGroup
	}
	n := max(p.Partitions, 1)
	base := p.Channel
	if p.Stream != "" {
		base = p.Stream
	}
	var parts []int
	if p.Stream != "" && len(m.Groups) > 0 {
		// A stream reads its user's partition only: a group message must
		// be on every one.
		parts = Partitions([]string{Broadcast}, n)
	} else {
		parts = Partitions(m.Recipients, n)
		for _, g := range m.Groups {
			// By Partition, not Partitions: a group named "*" is a name.
			parts = append(parts, Partition(g, n))
		}
		slices.Sort(parts)
		parts = slices.Compact(parts)
	}
	targets := make([]Target, len(parts))
	for i, part := range parts {
		targets[i] = Target{Partition: part, Key: Name(base, part, n)}
	}
	return targets, nil
}

// Publish sends msg, the JSON message as the module delivers it, once to
// each distinct partition of its recipients (to every partition for
// Broadcast), in one pipeline; with WaitReplicas, each XADD with its WAIT,
// one partition after the other. recipients are the canonical ids of the
// message's recipient field.
//
// With a Cluster client each command goes to the master of its channel's
// or key's slot. Copies are independent: a Target whose Err is nil was
// published; one with an Err may or may not have been (the connection may
// have broken after Redis ran the command). The client's own retries
// (go-redis MaxRetries) can publish a copy twice after such a break; set
// MaxRetries to -1 when a duplicate is worse than a loss.
func (p *Publisher) Publish(ctx context.Context, msg []byte, recipients ...string) (Result, error) {
	return p.PublishMessage(ctx, Message{Data: msg, Recipients: recipients})
}

// PublishMessage publishes m as Publish does, to its recipients and to its
// groups: see the package's documentation for where a group message goes.
func (p *Publisher) PublishMessage(ctx context.Context, m Message) (Result, error) {
	targets, err := p.check(m)
	if err != nil {
		return Result{}, err
	}
	res, err := p.send(ctx, []Message{m}, [][]Target{targets})
	return res[0], err
}

// Message is one message: the JSON as the module delivers it, the
// canonical ids of its recipient field, and the names of its group field.
type Message struct {
	Data       []byte
	Recipients []string
	Groups     []string
}

// PublishBatch publishes msgs as Publish would each, in order, in one
// pipeline for all their copies (with WaitReplicas, each XADD with its
// WAIT, one after the other). Every message is checked first: when one is
// refused (no recipient nor group, an empty id or group, empty data), nothing is sent and the
// error names its index (from 0) and wraps Publish's error for it. The
// results are by message, in order; copies fail or succeed independently,
// as with Publish, and the error joins every copy's.
//
// In a cluster, the copies for one channel or stream key keep their order;
// copies for keys on different masters are sent to each at once.
func (p *Publisher) PublishBatch(ctx context.Context, msgs []Message) ([]Result, error) {
	targets := make([][]Target, len(msgs))
	for i, m := range msgs {
		t, err := p.check(m)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		targets[i] = t
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	return p.send(ctx, msgs, targets)
}

// check is what Publish checks before sending: the settings, the
// recipients and the message; it returns the message's targets.
func (p *Publisher) check(m Message) ([]Target, error) {
	targets, err := p.TargetsOf(m)
	if err != nil {
		return nil, err
	}
	if len(m.Data) == 0 {
		return nil, ErrEmpty
	}
	return targets, nil
}

// send publishes each message of msgs to its targets (by message, in
// order) and fills in what Redis answered.
func (p *Publisher) send(ctx context.Context, msgs []Message, targets [][]Target) ([]Result, error) {
	results := make([]Result, len(msgs))
	var errs []error
	if p.WaitReplicas > 0 {
		for i, m := range msgs {
			var err error
			results[i], err = p.publishWaiting(ctx, m.Data, targets[i])
			errs = append(errs, err)
		}
		return results, errors.Join(errs...)
	}
	if len(msgs) == 1 && len(targets[0]) == 1 {
		// One command: sent as it is, not as a pipeline of one, so that
		// a client that batches concurrent callers' commands (go-redis's
		// AutoPipeline) can put it in a batch with others.
		return p.sendOne(ctx, msgs[0].Data, targets[0])
	}
	pipe := p.Client.Pipeline()
	cmds := make([][]redis.Cmder, len(msgs))
	for i, m := range msgs {
		cmds[i] = make([]redis.Cmder, len(targets[i]))
		for j, t := range targets[i] {
			switch {
			case p.Stream != "":
				cmds[i][j] = pipe.XAdd(ctx, p.xaddArgs(t.Key, m.Data))
			case p.Sharded:
				cmds[i][j] = pipe.SPublish(ctx, t.Key, m.Data)
			default:
				cmds[i][j] = pipe.Publish(ctx, t.Key, m.Data)
			}
		}
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i := range msgs {
		for j, c := range cmds[i] {
			t := &targets[i][j]
			var err error
			switch c := c.(type) {
			case *redis.StringCmd:
				t.ID, err = c.Result()
			case *redis.IntCmd:
				t.Receivers, err = c.Result()
			}
			if err != nil {
				t.Err = fmt.Errorf("publishing to %s: %w", t.Key, err)
				errs = append(errs, t.Err)
			}
		}
		results[i] = Result{Targets: targets[i]}
	}
	return results, errors.Join(errs...)
}

// sendOne publishes msg to its one target.
func (p *Publisher) sendOne(ctx context.Context, msg []byte, targets []Target) ([]Result, error) {
	t := &targets[0]
	var err error
	switch {
	case p.Stream != "":
		t.ID, err = p.Client.XAdd(ctx, p.xaddArgs(t.Key, msg)).Result()
	case p.Sharded:
		t.Receivers, err = p.Client.SPublish(ctx, t.Key, msg).Result()
	default:
		t.Receivers, err = p.Client.Publish(ctx, t.Key, msg).Result()
	}
	if err != nil {
		t.Err = fmt.Errorf("publishing to %s: %w", t.Key, err)
	}
	return []Result{{Targets: targets}}, t.Err
}

func (p *Publisher) xaddArgs(key string, msg []byte) *redis.XAddArgs {
	field := p.StreamField
	if field == "" {
		field = "data"
	}
	args := &redis.XAddArgs{Stream: key, Values: []any{field, msg}}
	if p.MaxLen > 0 {
		args.MaxLen, args.Approx = p.MaxLen, true
	}
	return args
}

// publishWaiting adds msg to each target's stream and waits for replicas:
// WAIT counts the writes of its own connection, so each XADD and its WAIT
// go together to the master of the key (in a cluster, found from the
// client's slot map; a MOVED answer during a resharding is returned as an
// error, for the caller to retry).
func (p *Publisher) publishWaiting(ctx context.Context, msg []byte, targets []Target) (Result, error) {
	timeout := p.WaitTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	var errs []error
	for i := range targets {
		t := &targets[i]
		var c redis.Cmdable = p.Client
		if cc, ok := p.Client.(*redis.ClusterClient); ok {
			node, err := cc.MasterForKey(ctx, t.Key)
			if err != nil {
				t.Err = fmt.Errorf("publishing to %s: %w", t.Key, err)
				errs = append(errs, t.Err)
				continue
			}
			c = node
		}
		var add *redis.StringCmd
		var wait *redis.IntCmd
		_, err := c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			add = pipe.XAdd(ctx, p.xaddArgs(t.Key, msg))
			wait = redis.NewIntCmd(ctx, "wait", p.WaitReplicas, timeout.Milliseconds())
			return pipe.Process(ctx, wait)
		})
		if err == nil {
			t.ID, t.Replicas = add.Val(), wait.Val()
			if t.Replicas < int64(p.WaitReplicas) {
				err = ErrNotReplicated
			}
		} else if add.Err() == nil {
			t.ID = add.Val()
		}
		if err != nil {
			t.Err = fmt.Errorf("publishing to %s: %w", t.Key, err)
			errs = append(errs, t.Err)
		}
	}
	return Result{Targets: targets}, errors.Join(errs...)
}
