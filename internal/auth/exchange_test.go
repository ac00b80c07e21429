package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/testkit"
)

// A flood of failed auth API calls is one log line per failureLogEvery,
// and the next line says how many were not logged.
func TestAuthFailuresLoggedOncePerInterval(t *testing.T) {
	core, logs := observer.New(zapcore.ErrorLevel)
	a := New(Options{URL: "http://127.0.0.1:1/", UserField: "user_id", Timeout: time.Second, Concurrency: 1,
		Logger: zap.New(core), Metrics: metrics.New()})
	t.Cleanup(a.Close)
	fail := unavailable(errors.New("refused"))
	for range 100 {
		a.logFailure(fail)
	}
	if n := logs.Len(); n != 1 {
		t.Fatalf("%d lines for 100 failures within %s, want 1", n, failureLogEvery)
	}
	a.failMu.Lock()
	a.failLogged = a.failLogged.Add(-failureLogEvery)
	a.failMu.Unlock()
	a.logFailure(fail)
	entries := logs.All()
	if len(entries) != 2 || entries[1].ContextMap()["failures_not_logged"] != int64(99) {
		t.Fatalf("second line %+v, want failures_not_logged 99", entries[len(entries)-1].ContextMap())
	}
}

// With a groups field, a 200 answer's groups come with the user; a
// malformed value fails the check as a malformed user id does (502).
func TestGroupsFromTheAnswer(t *testing.T) {
	for _, tt := range []struct {
		answer string
		want   Identity
		status int
	}{
		{`{"user_id":"alice","groups":["org:7","admins"]}`, Identity{User: "alice", Groups: []string{"admins", "org:7"}}, 0},
		{`{"user_id":"alice"}`, Identity{User: "alice"}, 0},
		{`{"user_id":"alice","groups":null}`, Identity{User: "alice"}, 0},
		{`{"user_id":"alice","groups":[]}`, Identity{User: "alice"}, 0},
		{`{"user_id":"alice","groups":"org:7"}`, Identity{}, http.StatusBadGateway},
		{`{"user_id":"alice","groups":["org:7",7]}`, Identity{}, http.StatusBadGateway},
		{`{"user_id":"alice","groups":[""]}`, Identity{}, http.StatusBadGateway},
		{`{"user_id":"alice","groups":["\ud800"]}`, Identity{}, http.StatusBadGateway},
		{`{"user_id":"alice","groups":["` + strings.Repeat("g", 257) + `"]}`, Identity{}, http.StatusBadGateway},
		{`{"user_id":"alice","groups":[` + strings.Repeat(`"g",`, 1024) + `"g"]}`, Identity{}, http.StatusBadGateway},
		{`{"groups":["org:7"]}`, Identity{}, http.StatusBadGateway},
	} {
		api := testkit.StartAuthAPI(t, map[string]testkit.AuthReply{"t": {Status: 200, Body: tt.answer}})
		a := New(Options{URL: api.URL, UserField: "user_id", GroupsField: "groups", Timeout: 5 * time.Second, Concurrency: 1,
			Logger: zap.NewNop(), Metrics: metrics.New()})
		id, err := a.Check(t.Context(), "198.51.100.1", Credentials{Token: "t"})
		a.Close()
		status := 0
		if err != nil {
			status = err.Status
		}
		if status != tt.status || fmt.Sprint(id) != fmt.Sprint(tt.want) {
			t.Errorf("%.60s: %+v, %v; want %+v, status %d", tt.answer, id, err, tt.want, tt.status)
		}
		if status == http.StatusBadGateway && strings.Contains(tt.answer, "user_id") && err.Msg != "Authentication service returned invalid groups." {
			t.Errorf("%.60s: message %q", tt.answer, err.Msg)
		}
	}
}
