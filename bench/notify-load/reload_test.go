package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// reloadArgs are the flags of a short reload run against a fakeNotify:
// 30 streams, 150 events/s for 2 s, the reload 0.6 s in.
func reloadArgs(f *fakeNotify, extra ...string) []string {
	return append([]string{"-url", f.srv.URL + "/events", "-streams", "30", "-rate", "150", "-duration", "2s",
		"-reload-at", "600ms", "-reload-window", "800ms", "-reload-admin", f.srv.URL,
		"-publish", "http", "-pub-url", f.srv.URL + "/publish", "-pub-workers", "4",
		"-settle", "100ms", "-drain", "500ms", "-retry", "100ms", "-probe-interval", "50ms", "-deadline", "30s"}, extra...)
}

// TestReloadRun runs the reload workload against a fake server whose
// reload ends every stream: each stream must be counted ended once and
// back once, before the window ends; events published while it was away
// are lost (pub/sub), nothing else is; the probes of a new user go on;
// an unchanged reload posts the running config back with Cache-Control:
// must-revalidate, a changed one renames the handler's channel and the
// publisher follows.
func TestReloadRun(t *testing.T) {
	for _, change := range []bool{false, true} {
		f := newFakeNotify(t, "")
		var extra []string
		if change {
			extra = []string{"-reload-change", "v2", "-reload-pub-url", f.srv.URL + "/publish2"}
		}
		start := time.Now()
		code, out, s := runCaptured(t, reloadArgs(f, extra...)...)
		r := s.Reload
		if code != 0 || !s.OK || r == nil || !r.Done || r.TookSecs <= 0 {
			t.Fatalf("change %v: exit %d, summary %+v\n%s", change, code, r, out)
		}
		if took := time.Since(start); took > 15*time.Second {
			t.Errorf("change %v: the run took %s", change, took)
		}
		if r.StreamsEnded != 30 || r.Ends != 30 || r.Reconnects != 30 || r.ReconnectFailures != 0 || r.Down != 0 ||
			r.Late != 0 || r.NotBack != 0 || s.Duplicated != 0 || s.Misrouted != 0 || r.IDRegressions != 0 {
			t.Errorf("change %v: %+v", change, r)
		}
		// Back after the server's retry (100 ms), well within the window.
		if r.UpMaxSecs < 0.1 || r.UpMaxSecs > 0.8 || r.AllBackSecs != r.BackMaxSecs || r.AllBackSecs < r.UpMaxSecs-0.01 {
			t.Errorf("change %v: back at %.3f s (re-established %.3f s)", change, r.AllBackSecs, r.UpMaxSecs)
		}
		if r.EndsFirstSecs < 0 || r.EndsLastSecs > 0.5 || r.CloseReasons["EOF"] != 30 {
			t.Errorf("change %v: ends %.3f..%.3f s, reasons %v", change, r.EndsFirstSecs, r.EndsLastSecs, r.CloseReasons)
		}
		// 150 events/s over 30 streams: the ~0.1 s away loses about 15.
		if s.Lost < 1 || s.Lost > 100 || uint64(s.Lost) != r.Lost || r.LostMax > 2 {
			t.Errorf("change %v: lost %d (per stream: %d, at most %d)", change, s.Lost, r.Lost, r.LostMax)
		}
		for name, p := range map[string]probeSummary{"before": r.ProbeBefore, "window": r.ProbeWindow, "after": r.ProbeAfter} {
			if p.OK < 3 || p.Failed != 0 {
				t.Errorf("change %v: probes %s: %+v", change, name, p)
			}
		}
		f.mu.Lock()
		loads, channel := f.loads, f.channel
		f.mu.Unlock()
		wantChannel, wantPosts := "notifications", int64(0)
		if change {
			wantChannel, wantPosts = "v2", 1
		}
		if len(loads) != 1 || loads[0] != "must-revalidate" || channel != wantChannel {
			t.Errorf("change %v: loads %q, channel %q", change, loads, channel)
		}
		if n := f.posts[1].Load(); (n > 0) != (wantPosts > 0) || change && f.posts[0].Load() == 0 {
			t.Errorf("change %v: %d events published before, %d after the switch", change, f.posts[0].Load(), n)
		}
		if !strings.Contains(out, "streams ended by the server: 30") {
			t.Errorf("change %v: report:\n%s", change, out)
		}
	}
}

// TestReloadRunFailures attacks the tool: a reload that fails, one that
// hangs, a server that dies at the reload, one that answers no stream
// after it. Each run must end by itself, soon, say what went wrong, and
// fail.
func TestReloadRunFailures(t *testing.T) {
	for _, c := range []struct {
		mode, wantErr string
	}{
		{"fail", "POST /load: status 500: loading new config: boom"},
		{"hang", "POST /load"},
		{"kill", "POST /load"},
		{"mute", ""},
	} {
		f := newFakeNotify(t, c.mode)
		start := time.Now()
		code, out, s := runCaptured(t, reloadArgs(f, "-reload-timeout", "300ms", "-connect-timeout", "30s")...)
		took := time.Since(start)
		r := s.Reload
		if code == 0 || s.OK || r == nil || r.Done != (c.wantErr == "") || !strings.Contains(r.Error, c.wantErr) {
			t.Fatalf("%s: exit %d, ok %v, reload %+v\n%s", c.mode, code, s.OK, r, out)
		}
		if took > 20*time.Second {
			t.Errorf("%s: the run took %s", c.mode, took)
		}
		if c.wantErr != "" && !strings.Contains(out, "FAILED: "+r.Error) {
			t.Errorf("%s: the report does not say the reload failed:\n%s", c.mode, out)
		}
		switch c.mode {
		case "fail", "hang": // the old config runs on
			if r.StreamsEnded != 0 || s.Lost != 0 || r.AllBackSecs != 0 {
				t.Errorf("%s: %+v, lost %d", c.mode, r, s.Lost)
			}
		case "kill": // nothing comes back; the publisher and the probes fail
			if r.StreamsEnded != 30 || r.Down != 30 || r.AllBackSecs != -1 || r.ReconnectFailures == 0 ||
				s.PublishErrors == 0 || r.ProbeAfter.OK != 0 || r.ProbeAfter.Failed == 0 {
				t.Errorf("kill: %+v, publish errors %d", r, s.PublishErrors)
			}
			if !strings.Contains(out, "NEVER: 30 streams down") {
				t.Errorf("kill: report:\n%s", out)
			}
		case "mute": // every reconnect waits for an answer (30 s) past the end
			if r.StreamsEnded != 30 || r.Down != 30 || r.Pending != 30 || r.ReconnectFailures != 0 || r.AllBackSecs != -1 {
				t.Errorf("mute: %+v", r)
			}
			if !strings.Contains(out, "NEVER: 30 streams down (30 waiting for an answer)") {
				t.Errorf("mute: report:\n%s", out)
			}
		}
	}
}

func TestReloadConfigCheck(t *testing.T) {
	base := func() runConfig {
		c := runConfig{retry: 3 * time.Second}
		c.pub = pubConfig{mode: "pubsub", via: "redis", rate: 100, duration: 30 * time.Second}
		c.reload = reloadConfig{at: 5 * time.Second, admin: "http://a", drain: 10 * time.Second, timeout: time.Second}
		return c
	}
	for _, c := range []struct {
		name    string
		edit    func(*runConfig)
		wantErr string
	}{
		{"ok", func(*runConfig) {}, ""},
		{"no reload", func(c *runConfig) { c.reload = reloadConfig{timeout: time.Second} }, ""},
		{"admin and cmd", func(c *runConfig) { c.reload.cmd = "true" }, "one of -reload-admin and -reload-cmd"},
		{"neither", func(c *runConfig) { c.reload.admin = "" }, "one of -reload-admin and -reload-cmd"},
		{"window past publishing", func(c *runConfig) { c.pub.duration = 19 * time.Second }, "must end within -duration"},
		{"no rate", func(c *runConfig) { c.pub.rate = 0 }, "must end within -duration"},
		{"change over http without url", func(c *runConfig) { c.reload.change = "v2"; c.pub.mode = "nchan" }, "-reload-pub-url"},
		{"url without change", func(c *runConfig) { c.reload.pubURL = "http://p" }, "needs -reload-change"},
		{"change alone", func(c *runConfig) { c.reload = reloadConfig{change: "v2", timeout: time.Second} }, "need -reload-at"},
	} {
		cfg := base()
		c.edit(&cfg)
		err := cfg.reload.check(&cfg)
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.wantErr)
		}
	}
	cfg := base()
	if err := cfg.reload.check(&cfg); err != nil || cfg.reload.window != 15*time.Second {
		t.Errorf("default window %s (%v), want drain + retry + 2s = 15s", cfg.reload.window, err)
	}
}

func TestWithSource(t *testing.T) {
	in := `{"apps":{"http":{"grace_period":1000000000000000001,"servers":{"a":{"routes":[
		{"handle":[{"handler":"subroute","routes":[{"handle":[{"handler":"notify","channel":"n","heartbeat":15000000000}]}]}]},
		{"handle":[{"handler":"notify","stream":"s"},{"handler":"notify_publish","channel":"n"}]}]}}}}}`
	out, err := withSource([]byte(in), "v2")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"grace_period":1000000000000000001`, `"channel":"v2","handler":"notify","heartbeat":15000000000`,
		`"handler":"notify","stream":"v2"`, `"channel":"n","handler":"notify_publish"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("%s lacks %s", out, want)
		}
	}
	if !json.Valid(out) {
		t.Errorf("not JSON: %s", out)
	}
	if _, err := withSource([]byte(`{"apps":{}}`), "v2"); err == nil || !strings.Contains(err.Error(), "no notify handler") {
		t.Errorf("no handler: %v", err)
	}
	if _, err := withSource([]byte(`{"apps":`), "v2"); err == nil {
		t.Error("a broken config was accepted")
	}
}

func TestReloadCommand(t *testing.T) {
	if err := reloadCommand(context.Background(), "true", time.Second); err != nil {
		t.Errorf("true: %v", err)
	}
	err := reloadCommand(context.Background(), "echo nginx: bad config >&2; exit 1", time.Second)
	if err == nil || !strings.Contains(err.Error(), "exit status 1: nginx: bad config") {
		t.Errorf("failing command: %v", err)
	}
	start := time.Now()
	err = reloadCommand(context.Background(), "sleep 30", 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "timed out after 200ms") || time.Since(start) > 5*time.Second {
		t.Errorf("hanging command: %v after %s", err, time.Since(start))
	}
}
