package auth

import (
	"fmt"
	"net/http"
)

// Error is a refusal with the status and JSON error message the client
// gets. Err, when set, is the cause, for the log only.
type Error struct {
	Status int
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Status, e.Msg, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Status, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// The refusals of requests whose credentials are missing or unusable,
// before the auth API is asked.
var (
	ErrNoCredentials = &Error{Status: http.StatusUnauthorized, Msg: "Credentials are not provided."}
	ErrTokenType     = &Error{Status: http.StatusUnauthorized, Msg: "Incorrect token type."}
	ErrTokenInvalid  = &Error{Status: http.StatusUnauthorized, Msg: "Invalid token."}
)

// The messages of the refusals the auth API's answer (or its absence)
// causes.
const (
	msgUnavailable = "Authentication service unavailable."
	msgTimedOut    = "Authentication service timed out."
	msgNoUser      = "Authentication service returned no user."
	msgBadGroups   = "Authentication service returned invalid groups."
	msgInvalid     = "Invalid or expired token."
	msgForbidden   = "Access denied."
)

func unavailable(err error) *Error {
	return &Error{Status: http.StatusBadGateway, Msg: msgUnavailable, Err: err}
}

func timedOut(err error) *Error {
	return &Error{Status: http.StatusGatewayTimeout, Msg: msgTimedOut, Err: err}
}
