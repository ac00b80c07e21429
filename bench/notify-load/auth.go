package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// authAPI is the load tool's auth API: the token u<N> is user N. When the
// request carries X-Original-URI (nginx's auth_request passes it for nchan),
// the URI's last path segment must be that user too, so a nchan subscriber
// cannot listen on another user's channel.
type authAPI struct {
	calls   atomic.Uint64
	refused atomic.Uint64
}

func (a *authAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stats" {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"calls":%d,"refused":%d}`+"\n", a.calls.Load(), a.refused.Load())
		return
	}
	a.calls.Add(1)
	user, ok := tokenUser(r.Header.Get("Authorization"))
	if !ok {
		a.refused.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"detail":"invalid token"}` + "\n"))
		return
	}
	if uri := r.Header.Get("X-Original-URI"); uri != "" {
		if i := strings.IndexByte(uri, '?'); i >= 0 {
			uri = uri[:i]
		}
		if uri[strings.LastIndexByte(uri, '/')+1:] != user {
			a.refused.Add(1)
			w.WriteHeader(http.StatusForbidden)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"user_id":"` + user + `"}` + "\n"))
}

// tokenUser maps "Bearer u<N>" to "N".
func tokenUser(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || len(tok) < 2 || tok[0] != 'u' {
		return "", false
	}
	if _, err := strconv.ParseUint(tok[1:], 10, 63); err != nil {
		return "", false
	}
	return tok[1:], true
}

// startAuth serves the auth API on addr until ctx ends.
func startAuth(ctx context.Context, addr string) (*authAPI, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	a := &authAPI{}
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("auth API:", err)
		}
	}()
	return a, ln.Addr().String(), nil
}

// authCalls asks an auth API started by another process for its call count.
func authCalls(statsURL string) (uint64, bool) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(statsURL)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var v struct {
		Calls uint64 `json:"calls"`
	}
	if err := jsonDecode(resp.Body, &v); err != nil {
		return 0, false
	}
	return v.Calls, true
}
