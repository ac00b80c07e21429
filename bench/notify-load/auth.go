package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
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
//
// Groups: with groups (every user is in each) or groupMod k (user N is in
// group g<N mod k>, see fan.go), a 200 answer also carries "groups": [...].
// The query of the auth URL may set both per request, as groups=a,b and
// group_mod=k, so that one auth API serves workloads with and without
// groups: a handler's auth_url ending in ?group_mod=1 puts every user in g0.
type authAPI struct {
	calls   atomic.Uint64
	refused atomic.Uint64

	unknownDelay time.Duration
	groups       []string
	groupMod     int

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
	groups, err := a.groupsOf(r.URL.Query(), user)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b := append(make([]byte, 0, 64), `{"user_id":"`...)
	b = append(b, user...)
	b = append(b, '"')
	if len(groups) > 0 {
		b = append(b, `,"groups":[`...)
		for i, g := range groups {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, g)
		}
		b = append(b, ']')
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, "}\n"...))
}

// groupsOf returns the groups of user (a decimal id): the API's own
// settings, or those of the request's query (groups, group_mod) when it
// names them.
func (a *authAPI) groupsOf(q url.Values, user string) ([]string, error) {
	groups, mod := a.groups, a.groupMod
	if q.Has("groups") {
		groups = splitList(q.Get("groups"))
	}
	if q.Has("group_mod") {
		n, err := strconv.Atoi(q.Get("group_mod"))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("group_mod must be a whole number, not %q", q.Get("group_mod"))
		}
		mod = n
	}
	if mod > 0 {
		n, _ := strconv.ParseUint(user, 10, 63)
		groups = append(groups[:len(groups):len(groups)], groupName(int(n%uint64(mod))))
	}
	return groups, nil
}

// splitList splits a comma-separated list, leaving out empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
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

// startAuth serves the auth API a on addr until ctx ends.
func startAuth(ctx context.Context, addr string, a *authAPI) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
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
	return ln.Addr().String(), nil
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
