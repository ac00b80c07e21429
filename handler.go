package notify

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-notify/notify/internal/gateway"
	"github.com/caddy-notify/notify/internal/hub"
	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/streamid"
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

	creds, aerr := h.tokens.Credentials(r)
	if aerr != nil {
		hdr.Set("WWW-Authenticate", "Bearer")
		h.refuse(w, aerr.Status, aerr.Msg)
		return nil
	}
	from, ok := h.lastEventID(r)
	if !ok {
		h.refuse(w, http.StatusBadRequest, "Malformed Last-Event-ID: expected <ms>-<seq>.")
		return nil
	}
	g := h.gateway
	// max_streams is checked before the auth call, and counts the checks
	// under way: a flood of requests cannot turn into auth API load past it.
	if !g.Reserve() {
		hdr.Set("Retry-After", h.retryAfter)
		h.refuse(w, http.StatusServiceUnavailable, "Too many streams.")
		return nil
	}
	handedOff := false // the gateway gives the place back
	defer func() {
		if !handedOff {
			g.Unreserve()
		}
	}()
	// Checked before the auth call: during an outage, clients retrying must
	// not turn into load on the auth API.
	if !g.WaitUp(r.Context(), redisWait) {
		h.refuseUnavailable(w, r)
		return nil
	}
	client := clientKey(r)
	id, aerr := h.auth.Check(r.Context(), client, creds)
	if aerr != nil {
		if r.Context().Err() != nil {
			// The client left while we waited: counted, so that a flood
			// of abandoned requests shows in the metrics.
			notifyMetrics.StreamsOpened.WithLabelValues(metrics.CanceledOutcome).Inc()
			return nil
		}
		if aerr.Status == http.StatusUnauthorized {
			hdr.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
		h.refuse(w, aerr.Status, aerr.Msg)
		return nil
	}
	user := id.User
	// With partitions, another partition answered WaitUp: this stream
	// needs its own to be read.
	if h.Partitions > 1 && !g.WaitUserUp(r.Context(), user, redisWait) {
		h.refuseUnavailable(w, r)
		return nil
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.notify.user_id", user)
	}
	if !g.ReserveUser(user) {
		hdr.Set("Retry-After", h.retryAfter)
		h.refuse(w, http.StatusTooManyRequests, "Too many streams for this user.")
		return nil
	}
	handedOff = true
	if r.Method == http.MethodHead {
		g.Release(user)
		hdr.Set("Content-Type", "text/event-stream")
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		notifyMetrics.StreamsOpened.WithLabelValues("ok").Inc()
		return nil
	}
	err := g.Serve(w, r, gateway.Stream{User: user, Groups: id.Groups, Client: client, Creds: creds, From: from, Retry: h.retryFrame})
	if err != nil {
		if r.Context().Err() != nil {
			notifyMetrics.StreamsOpened.WithLabelValues(metrics.CanceledOutcome).Inc()
			return nil
		}
		h.logger.Warn("resuming stream failed", zap.Error(err))
		hdr.Set("Retry-After", "1")
		h.refuse(w, http.StatusServiceUnavailable, "Notifications are temporarily unavailable.")
	}
	return nil
}

// refuseUnavailable answers 503 while Redis is not being read.
func (h *Handler) refuseUnavailable(w http.ResponseWriter, r *http.Request) {
	if r.Context().Err() != nil {
		notifyMetrics.StreamsOpened.WithLabelValues(metrics.CanceledOutcome).Inc()
		return
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(hub.MaxBackoff/time.Second)))
	h.refuse(w, http.StatusServiceUnavailable, "Notifications are temporarily unavailable.")
}

// lastEventID returns where a stream-mode client resumes: the Last-Event-ID
// header, which EventSource sends on its own when it reconnects, or else
// the last_event_id query parameter (a new page with a stored position).
// The header wins, since a reconnecting EventSource keeps the original URL.
// from is nil when the client does not resume; ok is false for a malformed
// ID: replaying everything instead would be a silent flood. Pub/sub mode
// ignores both: it has no history.
func (h *Handler) lastEventID(r *http.Request) (from *streamid.ID, ok bool) {
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
	id, ok := streamid.Parse(raw)
	if !ok {
		return nil, false
	}
	return &id, true
}

// clientKey names the client whose auth checks share one turn in the auth
// API's slot queue: the client IP as Caddy determined it (honouring
// trusted_proxies), or else the host of the connection's remote address. An
// IPv6 client counts by its /64, the smallest block one subscriber usually
// holds: otherwise one host could take as many turns as it has addresses.
func clientKey(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		ip = r.RemoteAddr
		if host, _, err := net.SplitHostPort(ip); err == nil {
			ip = host
		}
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip // a Unix socket ("@") or an address Caddy did not parse
	}
	if addr = addr.Unmap(); addr.Is6() {
		p, _ := addr.WithZone("").Prefix(64)
		return p.String()
	}
	return addr.String()
}

// refuse answers a request that gets no stream, with a JSON error body.
func (h *Handler) refuse(w http.ResponseWriter, status int, msg string) {
	notifyMetrics.StreamsOpened.WithLabelValues(strconv.Itoa(status)).Inc()
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
