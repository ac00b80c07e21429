package hub

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/publish"
)

// Set is the hubs of one source, one per partition, each reading its own
// channel (<channel>.<i>) or stream key (<stream>.<i>), or the channel or
// stream itself with one partition. A stream registers with the hub of its
// user's partition only (publish.Partition), which is where publishers put
// every message for that user and every broadcast: so each stream gets each
// of its messages once.
type Set struct {
	hubs []*Hub

	mu    sync.Mutex
	upN   int           // hubs up
	anyUp chan struct{} // closed while upN > 0
}

// NewSet starts one hub per partition of src on client, without dialing.
// In stream mode the window's bounds (History) and the byte budget of a
// read are split evenly between the partitions, and resumes reading from
// Redis share one set of slots, so that partitions leave every memory bound
// of stream mode as it is.
func NewSet(client redis.UniversalClient, src Source, opts Options) *Set {
	n := max(src.Partitions, 1)
	s := &Set{hubs: make([]*Hub, n), anyUp: make(chan struct{})}
	part := src
	part.Partitions = n
	opts.onChange = s.changed
	if src.Stream != "" {
		part.History = History{Entries: max(src.History.Entries/n, 1), Bytes: max(src.History.Bytes/n, 1)}
		opts.replays = make(chan struct{}, maxReplays)
	}
	for i := range n {
		part.Partition = i
		part.Channel = ""
		if src.Channel != "" {
			part.Channel = publish.Name(src.Channel, i, n)
		}
		if src.Stream != "" {
			part.Stream = publish.Name(src.Stream, i, n)
		}
		s.hubs[i] = New(client, part, opts)
	}
	return s
}

// changed counts a hub going up or down; called with that hub's mu held.
func (s *Set) changed(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if up {
		if s.upN++; s.upN == 1 {
			close(s.anyUp)
		}
		return
	}
	if s.upN--; s.upN == 0 {
		s.anyUp = make(chan struct{})
	}
}

// Stop stops every hub, which ends their streams. It runs once, when the
// last user of the set is gone.
func (s *Set) Stop() error {
	errs := make([]error, 0, len(s.hubs))
	for _, hb := range s.hubs {
		errs = append(errs, hb.Stop())
	}
	return errors.Join(errs...)
}

// Attach returns the index for key in every partition, by partition.
func (s *Set) Attach(key index.Key) []*index.Index {
	ixs := make([]*index.Index, len(s.hubs))
	for i, hb := range s.hubs {
		ixs[i] = hb.Attach(key)
	}
	return ixs
}

// Detach releases a handler's use of the indexes Attach returned.
func (s *Set) Detach(ixs []*index.Index) {
	for i, hb := range s.hubs {
		hb.Detach(ixs[i])
	}
}

// Partitions is how many partitions the set reads.
func (s *Set) Partitions() int { return len(s.hubs) }

// Partition returns the partition of user and its hub.
func (s *Set) Partition(user string) (int, *Hub) {
	i := publish.Partition(user, len(s.hubs))
	return i, s.hubs[i]
}

// WaitUp waits up to d for at least one partition to be read, and reports
// whether one is: a new stream checks it before calling the auth API, so
// that clients retrying during an outage do not load it, and then waits
// for its own partition (Hub.WaitUp).
func (s *Set) WaitUp(ctx context.Context, d time.Duration) bool {
	if len(s.hubs) == 1 {
		return s.hubs[0].WaitUp(ctx, d)
	}
	s.mu.Lock()
	up, ch := s.upN > 0, s.anyUp
	s.mu.Unlock()
	return up || waitClosed(ctx, ch, d)
}
