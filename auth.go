package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

const (
	// maxAuthBody bounds how much of an auth API response is read.
	maxAuthBody = 64 << 10
	// maxAuthConns bounds the connections to the auth API per handler.
	maxAuthConns = 64
)

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
// Concurrent checks of the same credentials share one call, and successful
// answers may be cached for a short time.
type authClient struct {
	url       string
	userField string
	timeout   time.Duration
	client    *http.Client
	logger    *zap.Logger

	inflight singleflight.Group
	cache    *authCache // nil when auth_cache is off
}

func newAuthClient(url, userField string, timeout, cacheTTL time.Duration, logger *zap.Logger) *authClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// A connect storm queues for a bounded pool of connections instead of
	// dialing thousands (and running out of file descriptors); a call
	// waiting for a connection still ends at auth_timeout.
	tr.MaxIdleConnsPerHost = maxAuthConns
	tr.MaxConnsPerHost = maxAuthConns
	var cache *authCache
	if cacheTTL > 0 {
		cache = newAuthCache(cacheTTL)
	}
	return &authClient{
		url:       url,
		userField: userField,
		timeout:   timeout,
		logger:    logger,
		cache:     cache,
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
// cookies), or the refusal for the client. A connect storm of many streams
// with the same credentials makes one auth API call, not one per stream.
func (a *authClient) userID(ctx context.Context, token, cookie string) (string, *authError) {
	key := credentialsKey(token, cookie)
	if a.cache != nil {
		if id, ok := a.cache.get(key); ok {
			return id, nil
		}
	}
	// The shared call must not end when the first of its waiters leaves:
	// it runs detached, bounded by auth_timeout.
	ch := a.inflight.DoChan(string(key[:]), func() (any, error) {
		id, aerr := a.check(context.WithoutCancel(ctx), token, cookie)
		if aerr != nil {
			return nil, aerr
		}
		if a.cache != nil {
			a.cache.put(key, id)
		}
		return id, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err.(*authError)
		}
		return res.Val.(string), nil
	case <-ctx.Done():
		return "", &authError{status: http.StatusBadGateway, msg: "Authentication service unavailable.", err: ctx.Err()}
	}
}

// check makes one auth API call and records its latency.
func (a *authClient) check(ctx context.Context, token, cookie string) (string, *authError) {
	start := time.Now()
	id, result, aerr := a.call(ctx, token, cookie)
	metrics.authDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	if aerr != nil && aerr.status >= 500 {
		// The token, cookie and response body never reach the log.
		a.logger.Error("auth api call failed",
			zap.String("auth_url", a.url), zap.Int("status", aerr.status), zap.Error(aerr.err))
	}
	return id, aerr
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
