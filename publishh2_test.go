package notify

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// publishesInFlight counts the notify_publish requests being served.
func publishesInFlight() int {
	var b strings.Builder
	_ = pprofGoroutines(&b)
	return strings.Count(b.String(), "notify.(*PublishHandler).ServeHTTP")
}

// TestPublishLimitsOverHTTP2 checks max_body and body_timeout over h2c,
// where a refusal ends the request's stream and the connection goes on: a
// body declared over max_body gets 413 without being sent, one sent past
// it without a declared length gets 413, and one that does not arrive
// within body_timeout gets 408; the next request on the same connection
// is published, and no handler is left running.
func TestPublishLimitsOverHTTP2(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	cfg := &caddyConfig{redis: rs, auth: auth, global: `
	servers {
		protocols h1 h2c
	}`, routes: `
	notify_publish /publish {
		redis {redis}
		max_body 1MiB
		body_timeout 1s
	}`}
	url := cfg.load(t) + "/publish"
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos, ExpectContinueTimeout: 5 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	conns := 0
	do := func(body io.Reader, length int64, header ...string) (*http.Response, string, time.Duration) {
		t.Helper()
		ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if !info.Reused {
				conns++
			}
		}})
		req := newRequest(t, http.MethodPost, url, "application/json", body)
		req = req.WithContext(ctx)
		req.ContentLength = length
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 {
			t.Fatalf("got %s, want HTTP/2", resp.Proto)
		}
		return resp, string(b), time.Since(start)
	}
	ok := `{"recipient_id":"alice"}`
	for _, tt := range []struct {
		name   string
		body   func() io.Reader
		length int64
		header []string
		status int
		within time.Duration
	}{
		{"declared over max_body, nothing sent", func() io.Reader { r, _ := io.Pipe(); return r }, 2e9, nil, 413, time.Second},
		{"declared over max_body, Expect: 100-continue", func() io.Reader { return iotest.ErrReader(errors.New("body read before the answer")) },
			2e9, []string{"Expect", "100-continue"}, 413, time.Second},
		{"past max_body without a declared length", func() io.Reader {
			return struct{ io.Reader }{&endless{head: []byte("[" + ok + "," + ok), fill: ' ', n: 100 << 20}}
		}, -1, nil, 413, 5 * time.Second},
		{"one byte a while", func() io.Reader {
			r, w := io.Pipe()
			go func() {
				// Until the transport closes the body, at the end of the
				// request's stream.
				for {
					if _, err := w.Write([]byte(" ")); err != nil {
						return
					}
					time.Sleep(200 * time.Millisecond)
				}
			}()
			return r
		}, -1, nil, 408, 5 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body, took := do(tt.body(), tt.length, tt.header...)
			if resp.StatusCode != tt.status || took > tt.within {
				t.Fatalf("%d %q after %v, want %d within %v", resp.StatusCode, body, took, tt.status, tt.within)
			}
			if c := resp.Header.Get("Connection"); c != "" {
				t.Errorf("Connection: %s over HTTP/2", c)
			}
			// The connection goes on.
			if resp, body, _ := do(strings.NewReader(ok), int64(len(ok))); resp.StatusCode != 202 {
				t.Fatalf("next request: %d %q", resp.StatusCode, body)
			}
			if conns != 1 {
				t.Errorf("%d connections, want the first one reused", conns)
			}
		})
	}
	testkit.WaitFor(t, 2*time.Second, "no publish handler running", func() bool { return publishesInFlight() == 0 })
}
