package auth

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-notify/notify/internal/metrics"
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
