package notify

import (
	"encoding/json"
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
	from, ok := h.lastEventID(r)
	if !ok {
		h.refuse(w, http.StatusBadRequest, "Malformed Last-Event-ID: expected <ms>-<seq>.")
		return nil
	}
	// max_streams is checked before the auth call, and counts the checks
	// under way: a flood of requests cannot turn into auth API load past it.
	if !h.limits.reserve() {
		hdr.Set("Retry-After", h.retryAfter)
		h.refuse(w, http.StatusServiceUnavailable, "Too many streams.")
		return nil
	}
	handedOff := false // serveStream releases the place
	defer func() {
		if !handedOff {
			h.limits.unreserve()
		}
	}()
	// Checked before the auth call: during an outage, clients retrying must
	// not turn into load on the auth API.
	if !h.hubSet.waitUp(r.Context(), redisWait) {
		h.refuseUnavailable(w, r)
		return nil
	}
	user, aerr := h.auth.userID(r.Context(), clientKey(r), token, r.Header.Get("Cookie"))
	if aerr != nil {
		if r.Context().Err() != nil {
			// The client left while we waited: counted, so that a flood
			// of abandoned requests shows in the metrics.
			metrics.streamsOpened.WithLabelValues(outcomeCanceled).Inc()
			return nil
		}
		if aerr.status == http.StatusUnauthorized {
			hdr.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
		h.refuse(w, aerr.status, aerr.msg)
		return nil
	}
	part, hb := h.hubSet.partition(user)
	// With partitions, another partition answered waitUp: this stream
	// needs its own to be read.
	if len(h.indexes) > 1 && !hb.waitUp(r.Context(), redisWait) {
		h.refuseUnavailable(w, r)
		return nil
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.notify.user_id", user)
	}
	if !h.limits.reserveUser(user) {
		hdr.Set("Retry-After", h.retryAfter)
		h.refuse(w, http.StatusTooManyRequests, "Too many streams for this user.")
		return nil
	}
	handedOff = true
	h.serveStream(w, r, hb, h.indexes[part], user, token, from)
	return nil
}

// refuseUnavailable answers 503 while Redis is not being read.
func (h *Handler) refuseUnavailable(w http.ResponseWriter, r *http.Request) {
	if r.Context().Err() != nil {
		metrics.streamsOpened.WithLabelValues(outcomeCanceled).Inc()
		return
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(backoffMax/time.Second)))
	h.refuse(w, http.StatusServiceUnavailable, "Notifications are temporarily unavailable.")
}

// lastEventID returns where a stream-mode client resumes: the Last-Event-ID
// header, which EventSource sends on its own when it reconnects, or else
// the last_event_id query parameter (a new page with a stored position).
// The header wins, since a reconnecting EventSource keeps the original URL.
// from is nil when the client does not resume; ok is false for a malformed
// ID: replaying everything instead would be a silent flood. Pub/sub mode
// ignores both: it has no history.
func (h *Handler) lastEventID(r *http.Request) (from *entryID, ok bool) {
	if h.Stream == "" {
		return nil, true
	}
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = r.URL.Query().Get("last_event_id")
	}
	if raw == "" {
		return nil, true
	}
	id, ok := parseEntryID(raw)
	if !ok {
		return nil, false
	}
	return &id, true
}

// serveStream answers an authenticated request with its event stream: it
// registers the subscriber in ix with hb, the index and hub of the user's
// partition, before the first byte, so that nothing published after the
// client sees the 200 can be missed, then hands the response to the
// stream's writer (pump.go): over a hijacked HTTP/1 connection, where
// ServeHTTP returns at once, or through the ResponseWriter on the request
// goroutine.
//
// The stream holds the places it took in the handler's limits (and its
// credentials' place in reauth, its user's in presence) until it ends.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request, hb *hub, ix *index, user, token string, from *entryID) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // an nginx in front must not buffer
	if r.Method == http.MethodHead {
		h.release(user, nil)
		w.WriteHeader(http.StatusOK)
		metrics.streamsOpened.WithLabelValues("ok").Inc()
		return
	}
	sub := newSubscriber(user, h.Broadcast, h.group, queueLimit{events: h.QueueSize, bytes: h.QueueBytes})
	st := &stream{sub: sub, h: h, ix: ix}
	sub.w = st // before the hub can queue anything
	if h.reauth != nil {
		st.cred = h.reauth.join(sub, clientKey(r), token, r.Header.Get("Cookie"))
	}
	if h.presence != nil {
		h.presence.join(user)
	}

	pre, err := hb.register(r.Context(), ix, sub, from, h.ReplayLimit)
	if err != nil {
		h.release(user, st)
		if r.Context().Err() != nil {
			metrics.streamsOpened.WithLabelValues(outcomeCanceled).Inc()
			return
		}
		h.logger.Warn("resuming stream failed", zap.Error(err))
		hdr.Set("Retry-After", "1")
		h.refuse(w, http.StatusServiceUnavailable, "Notifications are temporarily unavailable.")
		return
	}
	if from != nil {
		pre.record(h.logger)
	}
	metrics.streamsOpened.WithLabelValues("ok").Inc()
	metrics.streamsOpen.Inc()
	first := pre.frames(h.retryFrame)
	// The callback alone (nil unless the preamble wants to know), not a
	// method value of pre, which would keep the whole replay reachable for
	// as long as the stream lives.
	firstWritten := pre.written
	if r.ProtoMajor == 1 {
		if hw := h.hijack(w); hw != nil {
			// The stream goes on without the request (hijack.go): its
			// writer runs only while it has something to write, and
			// h.conns notices the client leaving.
			st.out = hw
			if !h.conns.add(st, hw.conn) { // the config is stopping
				if firstWritten != nil {
					firstWritten()
				}
				st.end()
				return
			}
			go st.start(first, firstWritten)
			return
		}
	}
	st.out = newRCWriter(w, r)
	st.serve(first, firstWritten, r.Context().Done())
}

// release gives back what an authenticated request held: its places in
// the limits and, once it has a stream (st), that stream's places in
// reauth and presence.
func (h *Handler) release(user string, st *stream) {
	if st != nil {
		if st.cred != nil {
			h.reauth.leave(st.cred, st.sub)
		}
		if h.presence != nil {
			h.presence.leave(user)
		}
	}
	h.limits.releaseUser(user)
	h.limits.unreserve()
}

// refuse answers a request that gets no stream, with a JSON error body.
func (h *Handler) refuse(w http.ResponseWriter, status int, msg string) {
	metrics.streamsOpened.WithLabelValues(strconv.Itoa(status)).Inc()
	writeError(w, status, msg)
}

// writeError writes {"error": msg} with the given status.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

// writeJSON writes v as JSON with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
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
