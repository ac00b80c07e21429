// Package auth asks the site's auth API who a stream's credentials belong
// to. Each job has its file: where the credentials come from
// (credentials.go), sharing one call among concurrent checks of the same
// credentials (flight.go), bounding and sharing out the calls in flight
// (slots.go), the HTTP exchange and its answer (exchange.go), and the
// optional cache of answers (cache.go); Client (client.go) puts them
// together.
package auth

import (
	"crypto/sha256"
	"net/http"
	"strings"
)

// Credentials are what a stream is authenticated with: the bearer token
// and the client's Cookie header, both forwarded to the auth API.
type Credentials struct {
	Token  string
	Cookie string
}

// Key identifies credentials without keeping them: a SHA-256 digest, so a
// collision can never hand one user's id to another.
type Key [sha256.Size]byte

// Key returns the credentials' digest.
func (c Credentials) Key() Key {
	h := sha256.New()
	h.Write([]byte(c.Token))
	h.Write([]byte{0})
	h.Write([]byte(c.Cookie))
	var k Key
	h.Sum(k[:0])
	return k
}

// TokenSource says where clients may put their token besides the
// Authorization header.
type TokenSource struct {
	Query  string // query parameter name, or ""
	Cookie string // cookie name, or ""
}

// Credentials returns the credentials of r. The Authorization header wins;
// the query parameter and then the cookie are consulted only when the
// request has no Authorization header at all, so a client cannot send one
// token to the auth API while another identifies it elsewhere.
func (ts TokenSource) Credentials(r *http.Request) (Credentials, *Error) {
	token, err := ts.token(r)
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{Token: token, Cookie: r.Header.Get("Cookie")}, nil
}

func (ts TokenSource) token(r *http.Request) (string, *Error) {
	if vals, ok := r.Header["Authorization"]; ok {
		v := ""
		if len(vals) > 0 {
			v = strings.TrimSpace(vals[0])
		}
		if v == "" {
			return "", ErrNoCredentials
		}
		scheme, token, _ := strings.Cut(v, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", ErrTokenType
		}
		return checkToken(strings.TrimSpace(token))
	}
	if ts.Query != "" {
		if t := r.URL.Query().Get(ts.Query); t != "" {
			return checkToken(t)
		}
	}
	if ts.Cookie != "" {
		if c, err := r.Cookie(ts.Cookie); err == nil && c.Value != "" {
			return checkToken(c.Value)
		}
	}
	return "", ErrNoCredentials
}

// checkToken refuses tokens that cannot travel in an HTTP header: a query
// parameter may carry CR, LF or other controls, and those must never reach
// the auth API request.
func checkToken(t string) (string, *Error) {
	if t == "" {
		return "", ErrNoCredentials
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c < 0x21 || c == 0x7f {
			return "", ErrTokenInvalid
		}
	}
	return t, nil
}
