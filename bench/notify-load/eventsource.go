package main

import (
	"context"
	"time"
)

// reopen does what an EventSource does when its stream ends (with
// -reconnect): it waits for the stream's retry delay (the last retry field
// it received, or -retry) and opens the stream again, with Last-Event-ID
// when it received an event id, again and again until the stream is back
// or the worker reports. A refused attempt (a status other than 200) is
// retried too, where a browser's EventSource would give up: the run goes
// on measuring, and the failures are reported by reason. endErr is how the
// stream ended; open opens it again with the given last event ID. It
// returns false when the worker stops first.
func (w *worker) reopen(ctx context.Context, st *streamState, endErr error, open func(lastID []byte) error) bool {
	if w.stopping.Load() {
		return false
	}
	w.streamEnded(endErr)
	st.ended(time.Now().UnixNano())
	for {
		delay := st.retry
		if delay <= 0 {
			delay = w.cfg.retry
		}
		if !w.pause(ctx, delay) {
			return false
		}
		resumed := len(st.lastID) > 0
		w.attempting.Add(1)
		err := open(st.lastID)
		w.attempting.Add(-1)
		if err != nil {
			st.reconnectFailed()
			w.reconnFailed.Add(1)
			w.reconnErrs.add(err)
			continue
		}
		st.reconnected(time.Now().UnixNano(), resumed)
		w.reconnects.Add(1)
		if resumed {
			w.reconnectsID.Add(1)
		}
		return true
	}
}

// pause waits for d; it returns false when the worker stops (it reported,
// or its deadline passed) first.
func (w *worker) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !w.stopping.Load()
	case <-ctx.Done():
	case <-w.quit:
	}
	return false
}
