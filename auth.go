package notify

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// maxAuthBody bounds how much of an auth API response is read.
const maxAuthBody = 64 << 10

// authError is a refusal with the status and JSON error message the client
// gets. err, when set, is the cause, for the log only.
type authError struct {
	status int
	msg    string
	err    error
}

func (e *authError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%d %s: %v", e.status, e.msg, e.err)
	}
	return fmt.Sprintf("%d %s", e.status, e.msg)
}

func (e *authError) Unwrap() error { return e.err }

var (
	errNoCredentials = &authError{status: http.StatusUnauthorized, msg: "Credentials are not provided."}
	errTokenType     = &authError{status: http.StatusUnauthorized, msg: "Incorrect token type."}
	errTokenInvalid  = &authError{status: http.StatusUnauthorized, msg: "Invalid token."}
)

// tokenSource says where clients may put their token besides the
// Authorization header.
type tokenSource struct {
	query  string // query parameter name, or ""
	cookie string // cookie name, or ""
}

// extract returns the bearer token of r. The Authorization header wins; the
// query parameter and then the cookie are consulted only when the request
// has no Authorization header at all, so a client cannot send one token to
// the auth API while another identifies it elsewhere.
func (ts tokenSource) extract(r *http.Request) (string, *authError) {
	if vals, ok := r.Header["Authorization"]; ok {
		v := ""
		if len(vals) > 0 {
			v = strings.TrimSpace(vals[0])
		}
		if v == "" {
			return "", errNoCredentials
		}
		scheme, token, _ := strings.Cut(v, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", errTokenType
		}
		return checkToken(strings.TrimSpace(token))
	}
	if ts.query != "" {
		if t := r.URL.Query().Get(ts.query); t != "" {
			return checkToken(t)
		}
	}
	if ts.cookie != "" {
		if c, err := r.Cookie(ts.cookie); err == nil && c.Value != "" {
			return checkToken(c.Value)
		}
	}
	return "", errNoCredentials
}

// checkToken refuses tokens that cannot travel in an HTTP header: a query
// parameter may carry CR, LF or other controls, and those must never reach
// the auth API request.
func checkToken(t string) (string, *authError) {
	if t == "" {
		return "", errNoCredentials
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c < 0x21 || c == 0x7f {
			return "", errTokenInvalid
		}
	}
	return t, nil
}

// authClient asks the site's auth API who a token belongs to. One client,
// with pooled keep-alive connections, serves every stream of a handler.
// Concurrent checks of the same credentials share one call (a flight), at
// most auth_concurrency calls are in flight at once (slots), and successful
// answers may be cached for a short time.
type authClient struct {
	url       string
	userField string
	timeout   time.Duration
	client    *http.Client
	logger    *zap.Logger
	slots     *authSlots
	cache     *authCache // nil when auth_cache is off

	mu      sync.Mutex
	flights map[[sha256.Size]byte]*flight // checks not yet answered, by credentials

	failMu      sync.Mutex
	failLogged  time.Time // when a failed call was last logged
	failSkipped int       // failed calls not logged since
}

// flight is one auth API check shared by every request with the same
// credentials. Unlike singleflight, it keeps track of its waiters: until its
// request is sent it is abandoned as soon as the last of them leaves, and it
// is sent only if one of them is still there, so a client that opens a
// stream and resets it at once (issue 8) costs the auth API nothing. Once
// sent, it runs to the end, detached from the clients: closing the
// connection would hide the work from us, not from the auth API; new
// requests with the same credentials join it.
type flight struct {
	key           [sha256.Size]byte
	token, cookie string

	// Guarded by authClient.mu.
	waiters list.List   // of the waits' contexts: done when the client leaves or gives up
	sent    bool        // the request is out: the flight can no longer be abandoned
	place   *slotWaiter // its place in the slot queue until send runs

	done chan struct{} // closed when id and err are set
	id   string
	err  *authError
}

func newAuthClient(url, userField string, timeout, cacheTTL time.Duration, concurrency int, logger *zap.Logger) *authClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// The slots already keep the requests in flight to concurrency; the
	// pool matches them, so that no request waits for a connection and no
	// connection is dialled only to be closed as idle.
	tr.MaxIdleConnsPerHost = concurrency
	tr.MaxConnsPerHost = concurrency
	var cache *authCache
	if cacheTTL > 0 {
		cache = newAuthCache(cacheTTL)
	}
	return &authClient{
		url:       url,
		userField: userField,
		timeout:   timeout,
		logger:    logger,
		slots:     newAuthSlots(concurrency),
		cache:     cache,
		flights:   make(map[[sha256.Size]byte]*flight),
		client: &http.Client{
			Transport: tr,
			// A redirect is a misconfigured auth_url; following it could
			// hand the token to another host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (a *authClient) close() { a.client.CloseIdleConnections() }

// userID returns the canonical user id for token (and the client's
// cookies), or the refusal for the client. client is the key under which
// the check queues for a slot (see clientKey). A connect storm of many
// streams with the same credentials makes one auth API call, not one per
// stream; a request whose client has left makes none. The wait, slot
// included, ends at auth_timeout with 504.
func (a *authClient) userID(ctx context.Context, client, token, cookie string) (string, *authError) {
	key := credentialsKey(token, cookie)
	if a.cache != nil {
		if id, ok := a.cache.get(key); ok {
			return id, nil
		}
	}
	if ctx.Err() != nil {
		// A stream reset before its check starts asks nothing.
		metrics.authAbandoned.Inc()
		return "", clientGone(ctx)
	}
	wait, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	f, me := a.join(wait, key, client, token, cookie)
	select {
	case <-f.done:
		return f.id, f.err
	case <-wait.Done():
	}
	select {
	case <-f.done: // answered at the same moment: take the answer
		return f.id, f.err
	default:
	}
	a.leave(f, me)
	if ctx.Err() != nil {
		return "", clientGone(ctx)
	}
	return "", &authError{status: http.StatusGatewayTimeout, msg: "Authentication service timed out.",
		err: errors.New("no answer within auth_timeout, waiting for a slot included")}
}

func clientGone(ctx context.Context) *authError {
	return &authError{status: http.StatusBadGateway, msg: "Authentication service unavailable.", err: ctx.Err()}
}

// join adds a waiter, whose wait ends with ctx, to the flight for key,
// starting one (and queueing it for a slot under client) when there is
// none. It returns the flight and the waiter's place among its waiters.
func (a *authClient) join(ctx context.Context, key [sha256.Size]byte, client, token, cookie string) (*flight, *list.Element) {
	a.mu.Lock()
	if f := a.flights[key]; f != nil {
		me := f.waiters.PushBack(ctx)
		a.mu.Unlock()
		return f, me
	}
	f := &flight{key: key, token: token, cookie: cookie, done: make(chan struct{})}
	me := f.waiters.PushBack(ctx)
	a.flights[key] = f
	a.mu.Unlock()
	place := a.slots.acquire(client, func() { go a.send(f) })
	if place != nil {
		a.mu.Lock()
		// The caller still waits, so f cannot be abandoned yet; if send
		// has run already, place is stale and cancel will say so.
		if !f.sent {
			f.place = place
		}
		a.mu.Unlock()
	}
	return f, me
}

// leave removes a waiter that gave up. The last one to leave a flight not
// yet sent abandons it: its place in the slot queue is given up at once,
// and the credentials are free for a new flight.
func (a *authClient) leave(f *flight, me *list.Element) {
	a.mu.Lock()
	f.waiters.Remove(me)
	if f.waiters.Len() > 0 || f.sent {
		a.mu.Unlock()
		return
	}
	if a.flights[f.key] == f {
		delete(a.flights, f.key)
	}
	place := f.place
	f.place = nil
	a.mu.Unlock()
	if a.slots.cancel(place) {
		metrics.authAbandoned.Inc()
	}
	// Otherwise send has the slot, or had it and gave it back.
}

// send makes the flight's call on the slot it was granted. It runs in its
// own goroutine, detached from the clients, and keeps the slot until the
// auth API answers or auth_timeout passes.
func (a *authClient) send(f *flight) {
	a.mu.Lock()
	f.place = nil
	if !f.wanted() {
		// Every waiter has left, or is about to: their clients are gone.
		// They find f out of the map and need nothing more from it.
		if a.flights[f.key] == f {
			delete(a.flights, f.key)
		}
		a.mu.Unlock()
		a.slots.release()
		metrics.authAbandoned.Inc()
		return
	}
	f.sent = true
	a.mu.Unlock()

	id, aerr := a.check(context.Background(), f.token, f.cookie)
	a.slots.release()
	if aerr == nil && a.cache != nil {
		// Before the flight ends, so that the next request finds one or
		// the other.
		a.cache.put(f.key, id)
	}
	a.mu.Lock()
	if a.flights[f.key] == f {
		delete(a.flights, f.key)
	}
	a.mu.Unlock()
	f.id, f.err = id, aerr
	close(f.done)
}

// wanted reports whether a waiter still waits. One whose client has left
// (or whose wait timed out) may not have woken up to leave the flight yet:
// its context says so at once. authClient.mu is held.
func (f *flight) wanted() bool {
	for e := f.waiters.Front(); e != nil; e = e.Next() {
		if e.Value.(context.Context).Err() == nil {
			return true
		}
	}
	return false
}

// clientKey names the client whose checks share one turn in the slot
// queue: the client IP as Caddy determined it (honouring trusted_proxies),
// or else the host of the connection's remote address. An IPv6 client
// counts by its /64, the smallest block one subscriber usually holds:
// otherwise one host could take as many turns as it has addresses.
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

// check makes one auth API call and records its latency.
func (a *authClient) check(ctx context.Context, token, cookie string) (string, *authError) {
	start := time.Now()
	id, result, aerr := a.call(ctx, token, cookie)
	metrics.authDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	if aerr != nil && aerr.status >= 500 {
		a.logFailure(aerr)
	}
	return id, aerr
}

// failureLogEvery limits how often failed auth API calls are logged: a
// flood of them (an attack, an outage) must not become a flood of lines.
const failureLogEvery = 5 * time.Second

// logFailure logs a failed call, or counts it when one was logged less
// than failureLogEvery ago; the next line says how many were not logged.
// The token, cookie and response body never reach the log.
func (a *authClient) logFailure(aerr *authError) {
	a.failMu.Lock()
	now := time.Now()
	if now.Sub(a.failLogged) < failureLogEvery {
		a.failSkipped++
		a.failMu.Unlock()
		return
	}
	skipped := a.failSkipped
	a.failLogged, a.failSkipped = now, 0
	a.failMu.Unlock()
	a.logger.Error("auth api call failed", zap.String("auth_url", a.url), zap.Int("status", aerr.status),
		zap.Error(aerr.err), zap.Int("failures_not_logged", skipped))
}

func (a *authClient) call(ctx context.Context, token, cookie string) (id, result string, _ *authError) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url, nil)
	if err != nil {
		return "", "error", &authError{status: http.StatusBadGateway, msg: "Authentication service unavailable.", err: err}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	metrics.authInFlight.Inc()
	defer metrics.authInFlight.Dec()
	resp, err := a.client.Do(req)
	if err != nil {
		return transportError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAuthBody))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return "", "denied", &authError{status: http.StatusUnauthorized, msg: "Invalid or expired token."}
	case resp.StatusCode == http.StatusForbidden:
		return "", "denied", &authError{status: http.StatusForbidden, msg: "Access denied."}
	case resp.StatusCode != http.StatusOK:
		return "", "error", &authError{status: http.StatusBadGateway, msg: "Authentication service unavailable.",
			err: fmt.Errorf("auth api answered %d", resp.StatusCode)}
	case err != nil:
		return transportError(ctx, err)
	}
	id, ok := userIDFromAuth(body, a.userField)
	if !ok {
		return "", "error", &authError{status: http.StatusBadGateway, msg: "Authentication service returned no user.",
			err: fmt.Errorf("auth api response has no usable %q field", a.userField)}
	}
	return id, "ok", nil
}

// transportError maps a failed exchange with the auth API: 504 when it took
// longer than auth_timeout, 502 otherwise.
func transportError(ctx context.Context, err error) (id, result string, _ *authError) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(err) {
		return "", "timeout", &authError{status: http.StatusGatewayTimeout, msg: "Authentication service timed out.", err: err}
	}
	return "", "error", &authError{status: http.StatusBadGateway, msg: "Authentication service unavailable.", err: err}
}
