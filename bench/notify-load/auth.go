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
//
// Any other token is refused (401) after unknownDelay, as a real auth API
// that looks an unknown token up in its database: the attack workloads
// flood it with such tokens. Like a real one, it finishes that work even
// when the caller has hung up, so its calls in flight are what a real API
// would be working on. It counts its calls, the calls in flight (and
// their peak) and the connections it accepted (and the peak open at once),
// for GET /stats; GET /stats?reset=1 also restarts both peaks from the
// current values, so that each workload measures its own.
type authAPI struct {
	calls   atomic.Uint64
	refused atomic.Uint64

	unknownDelay time.Duration

	inflight peakGauge // requests being answered
	conns    atomic.Uint64
	open     peakGauge // connections open
}

// peakGauge is a gauge that remembers its highest value since the last reset.
type peakGauge struct {
	cur, peak atomic.Int64
}

func (g *peakGauge) add(d int64) {
	v := g.cur.Add(d)
	for {
		p := g.peak.Load()
		if v <= p || g.peak.CompareAndSwap(p, v) {
			return
		}
	}
}

// resetPeak restarts the peak from the current value.
func (g *peakGauge) resetPeak() { g.peak.Store(g.cur.Load()) }

// authStats is the JSON of GET /stats.
type authStats struct {
	Calls     uint64 `json:"calls"`
	Refused   uint64 `json:"refused"`
	Inflight  int64  `json:"inflight"`
	PeakIn    int64  `json:"peak_inflight"` // since the last reset
	Conns     uint64 `json:"conns"`         // connections accepted, ever
	OpenConns int64  `json:"open_conns"`
	PeakOpen  int64  `json:"peak_open_conns"` // since the last reset
}

func (a *authAPI) stats() authStats {
	return authStats{Calls: a.calls.Load(), Refused: a.refused.Load(),
		Inflight: a.inflight.cur.Load(), PeakIn: a.inflight.peak.Load(),
		Conns: a.conns.Load(), OpenConns: a.open.cur.Load(), PeakOpen: a.open.peak.Load()}
}

// connState counts the server's connections (http.Server.ConnState).
func (a *authAPI) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		a.conns.Add(1)
		a.open.add(1)
	case http.StateHijacked, http.StateClosed:
		a.open.add(-1)
	}
}

func (a *authAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stats" {
		if r.URL.Query().Get("reset") != "" {
			a.inflight.resetPeak()
			a.open.resetPeak()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = jsonEncode(w, a.stats())
		return
	}
	a.calls.Add(1)
	a.inflight.add(1)
	defer a.inflight.add(-1)
	user, ok := tokenUser(r.Header.Get("Authorization"))
	if !ok {
		a.refused.Add(1)
		time.Sleep(a.unknownDelay) // not cut short by the caller leaving
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

// startAuth serves the auth API on addr until ctx ends; unknown tokens are
// refused after unknownDelay.
func startAuth(ctx context.Context, addr string, unknownDelay time.Duration) (*authAPI, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	a := &authAPI{unknownDelay: unknownDelay}
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second, ConnState: a.connState}
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
	st, err := fetchAuthStats(statsURL, false)
	return st.Calls, err == nil
}

// fetchAuthStats GETs the /stats of an auth API run as `notify-load auth`;
// with reset, its peaks restart from the current values.
func fetchAuthStats(statsURL string, reset bool) (authStats, error) {
	var st authStats
	if reset {
		if strings.Contains(statsURL, "?") {
			statsURL += "&reset=1"
		} else {
			statsURL += "?reset=1"
		}
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(statsURL)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s: status %d", statsURL, resp.StatusCode)
	}
	err = jsonDecode(resp.Body, &st)
	return st, err
}
