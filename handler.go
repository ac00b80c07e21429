package notify

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// redisWait is how long a new stream waits for the Redis subscription before
// it is refused with 503; it covers the first moments after a start.
const redisWait = time.Second

// ServeHTTP authenticates the request and streams the user's notifications
// until the client leaves, the stream falls too far behind, or the config
// stops. It never calls next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	hdr := w.Header()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		if h.cors.enabled {
			h.cors.preflight(w, r)
			return nil
		}
		fallthrough
	default:
		allow := "GET, HEAD"
		if h.cors.enabled {
			allow += ", OPTIONS"
		}
		hdr.Set("Allow", allow)
		h.refuse(w, http.StatusMethodNotAllowed, "Method not allowed.")
		return nil
	}
	h.cors.apply(hdr, r)

	token, aerr := h.tokens.extract(r)
	if aerr != nil {
		hdr.Set("WWW-Authenticate", "Bearer")
		h.refuse(w, aerr.status, aerr.msg)
		return nil
	}
	resumeFrom, hasResume, ok := h.lastEventID(r)
	if !ok {
		h.refuse(w, http.StatusBadRequest, "Malformed Last-Event-ID: expected <ms>-<seq>.")
		return nil
	}
	// Checked before the auth call: during an outage, clients retrying must
	// not turn into load on the auth API.
	if !h.hub.waitUp(r.Context(), redisWait) {
		if r.Context().Err() != nil {
			return nil
		}
		hdr.Set("Retry-After", strconv.Itoa(int(backoffMax/time.Second)))
		h.refuse(w, http.StatusServiceUnavailable, "Notifications are temporarily unavailable.")
		return nil
	}
	user, aerr := h.auth.userID(r.Context(), token, r.Header.Get("Cookie"))
	if aerr != nil {
		if r.Context().Err() != nil {
			return nil // the client left while we waited
		}
		if aerr.status == http.StatusUnauthorized {
			hdr.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
		h.refuse(w, aerr.status, aerr.msg)
		return nil
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.notify.user_id", user)
	}
	return h.stream(w, r, user, resumeFrom, hasResume)
}

// lastEventID returns where a stream-mode client resumes: the Last-Event-ID
// header, which EventSource sends on its own when it reconnects, or else
// the last_event_id query parameter (a new page with a stored position).
// The header wins, since a reconnecting EventSource keeps the original URL.
// ok is false for a malformed ID: replaying everything instead would be a
// silent flood. Pub/sub mode ignores both: it has no history.
func (h *Handler) lastEventID(r *http.Request) (id streamID, has, ok bool) {
	if h.Stream == "" {
		return streamID{}, false, true
	}
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = r.URL.Query().Get("last_event_id")
	}
	if raw == "" {
		return streamID{}, false, true
	}
	id, ok = parseStreamID(raw)
	return id, ok, ok
}

// stream writes the SSE response for an authenticated user.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, user string, resumeFrom streamID, hasResume bool) error {
	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // an nginx in front must not buffer
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		metrics.streamsOpened.WithLabelValues("ok").Inc()
		return nil
	}

	// Register before the first byte so nothing published after the client
	// sees the 200 can be missed.
	sub := newSubscriber(user, h.Broadcast, h, h.QueueSize)
	var resumed resumeResult
	if hasResume {
		var err error
		resumed, err = h.hub.resume(r.Context(), h.index, sub, resumeFrom, h.ReplayLimit)
		if err != nil {
			if r.Context().Err() != nil {
				return nil
			}
			h.logger.Warn("resuming stream failed", zap.Error(err))
			hdr.Set("Retry-After", "1")
			h.refuse(w, http.StatusServiceUnavailable, "Notifications are temporarily unavailable.")
			return nil
		}
		resumed.record(h.logger)
	} else if h.Stream != "" {
		resumed.position = h.hub.subscribeNew(h.index, sub)
	} else {
		h.index.add(sub)
	}
	metrics.streamsOpened.WithLabelValues("ok").Inc()
	if r.ProtoMajor == 1 && h.hijack(w, sub, resumed) {
		// HTTP/1.x: the stream goes on without the request (hijack.go).
		return nil
	}
	defer h.index.remove(sub)
	metrics.streamsOpen.Inc()
	defer metrics.streamsOpen.Dec()

	// An expired read deadline would cancel the request on HTTP/1.1; a
	// stream reads nothing after its headers.
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		h.debug("clearing read deadline", err)
	}
	w.WriteHeader(http.StatusOK)
	// The retry field is the first body byte: it pushes the headers through
	// any buffering wrapper at once.
	if _, err := w.Write(appendRetry(nil, time.Duration(h.Retry))); err != nil {
		return nil
	}
	for _, ev := range resumed.frames() {
		if _, err := w.Write(ev.wire); err != nil {
			return nil
		}
	}
	resumed = resumeResult{} // let the replay go
	if err := rc.Flush(); err != nil {
		h.logger.Error("response cannot be flushed; streaming is impossible here", zap.Error(err))
		return nil
	}

	writeTimeout := time.Duration(h.WriteTimeout)
	var batch []*event
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-h.stopCtx.Done():
			return nil
		case _, ok := <-sub.wake:
			if !ok {
				// Closed by the hub: the queue overflowed or the hub
				// was destroyed. The client reconnects.
				return nil
			}
			batch = sub.take(batch)
			if err := rc.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
				h.debug("setting write deadline", err)
			}
			for i, ev := range batch {
				if _, err := w.Write(ev.wire); err != nil {
					h.debug("writing event", err)
					return nil
				}
				batch[i] = nil // let the event go before the next batch
			}
			if err := rc.Flush(); err != nil {
				h.debug("flushing events", err)
				return nil
			}
			// Clear the deadline: HTTP/2 resets a stream whose write
			// deadline passes even when nothing is being written.
			if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
				h.debug("clearing write deadline", err)
			}
		}
	}
}

// refuse answers a request that gets no stream, with a JSON error body.
func (h *Handler) refuse(w http.ResponseWriter, status int, msg string) {
	metrics.streamsOpened.WithLabelValues(strconv.Itoa(status)).Inc()
	writeError(w, status, msg)
}

// writeError writes {"error": msg} with the given status.
func writeError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func (h *Handler) debug(msg string, err error) {
	if c := h.logger.Check(zapcore.DebugLevel, msg); c != nil {
		c.Write(zap.Error(err))
	}
}
