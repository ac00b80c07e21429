package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/jsonscan"
	"github.com/caddy-notify/notify/internal/message"
)

// maxAnswer bounds how much of an auth API answer is read.
const maxAnswer = 64 << 10

// check makes one auth API call and records its latency.
func (a *Client) check(ctx context.Context, creds Credentials) (Identity, *Error) {
	start := time.Now()
	id, result, aerr := a.call(ctx, creds)
	a.m.AuthDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	if aerr != nil && aerr.Status >= 500 {
		a.logFailure(aerr)
	}
	return id, aerr
}

// failureLogEvery limits how often failed auth API calls are logged: a
// flood of them (an attack, an outage) must not become a flood of lines.
const failureLogEvery = 5 * time.Second

// logFailure logs a failed call, or counts it when one was logged less
// than failureLogEvery ago; the next line says how many were not logged.
// The token, cookie and answer never reach the log.
func (a *Client) logFailure(aerr *Error) {
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
	a.logger.Error("auth api call failed", zap.String("auth_url", a.url), zap.Int("status", aerr.Status),
		zap.Error(aerr.Err), zap.Int("failures_not_logged", skipped))
}

// call is the HTTP exchange: a GET with the token as a bearer token and the
// client's cookies, and the answer read into an identity. result is its
// label in auth_duration_seconds.
func (a *Client) call(ctx context.Context, creds Credentials) (id Identity, result string, _ *Error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url, nil)
	if err != nil {
		return Identity{}, "error", unavailable(err)
	}
	req.Header.Set("Authorization", "Bearer "+creds.Token)
	req.Header.Set("Accept", "application/json")
	if creds.Cookie != "" {
		req.Header.Set("Cookie", creds.Cookie)
	}
	a.m.AuthInFlight.Inc()
	defer a.m.AuthInFlight.Dec()
	resp, err := a.client.Do(req)
	if err != nil {
		return transportError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return Identity{}, "denied", &Error{Status: http.StatusUnauthorized, Msg: msgInvalid}
	case resp.StatusCode == http.StatusForbidden:
		return Identity{}, "denied", &Error{Status: http.StatusForbidden, Msg: msgForbidden}
	case resp.StatusCode != http.StatusOK:
		return Identity{}, "error", unavailable(fmt.Errorf("auth api answered %d", resp.StatusCode))
	case err != nil:
		return transportError(ctx, err)
	}
	id, aerr := a.identity(body)
	if aerr != nil {
		return Identity{}, "error", aerr
	}
	return id, "ok", nil
}

// identity reads a 200 answer: the user id in the user field and, when
// groups are on, the groups in theirs.
func (a *Client) identity(answer []byte) (Identity, *Error) {
	var raw [2][]byte
	ok := jsonscan.Members(answer, []string{a.userField, a.groupsField}, raw[:])
	var id Identity
	if ok && raw[0] != nil {
		id.User, ok = message.UserIDValue(raw[0])
	} else {
		ok = false
	}
	if !ok {
		return Identity{}, &Error{Status: http.StatusBadGateway, Msg: msgNoUser,
			Err: fmt.Errorf("auth api answer has no usable %q field", a.userField)}
	}
	if raw[1] != nil {
		if id.Groups, ok = message.UserGroups(raw[1]); !ok {
			return Identity{}, &Error{Status: http.StatusBadGateway, Msg: msgBadGroups,
				Err: fmt.Errorf("auth api answer's %q field is not an array of at most %d group names", a.groupsField, message.MaxUserGroups)}
		}
	}
	return id, nil
}

// transportError maps a failed exchange with the auth API: 504 when it took
// longer than the timeout, 502 otherwise.
func transportError(ctx context.Context, err error) (id Identity, result string, _ *Error) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(err) {
		return Identity{}, "timeout", timedOut(err)
	}
	return Identity{}, "error", unavailable(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
