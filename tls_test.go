package notify

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/caddy-notify/notify/internal/testkit"
)

// TestStreamsOverTLS serves the handler over HTTPS with Caddy's internal CA
// and opens one stream over HTTP/1.1 (hijacked: the TLS connection is taken
// over), one over HTTP/2 and one over HTTP/3 (QUIC).
func TestStreamsOverTLS(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	port := testkit.FreePort(t)
	loadCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
	skip_install_trust
	storage file_system %s
	https_port %d
	grace_period 5s
	log {
		level ERROR
	}
}
https://127.0.0.1:%[2]d {
	tls internal
	notify {
		redis %s
		auth_url %s
	}
}
`, t.TempDir(), port, rs.URL(), auth.URL))
	url := fmt.Sprintf("https://127.0.0.1:%d/", port)
	// The internal CA issues the site's certificate in the background.
	probe := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // test CA
	t.Cleanup(probe.CloseIdleConnections)
	testkit.WaitFor(t, 15*time.Second, "the site certificate", func() bool {
		resp, err := (&http.Client{Transport: probe}).Head(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	tlsConfig := &tls.Config{InsecureSkipVerify: true, ServerName: "127.0.0.1"} //nolint:gosec // test CA
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0", "HTTP/3.0"} {
		t.Run(proto, func(t *testing.T) {
			var rt http.RoundTripper
			switch proto {
			case "HTTP/3.0":
				tr := &http3.Transport{TLSClientConfig: tlsConfig}
				t.Cleanup(func() { _ = tr.Close() })
				rt = tr
			default:
				tr := &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: proto == "HTTP/2.0"}
				if proto == "HTTP/1.1" {
					tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
				}
				t.Cleanup(tr.CloseIdleConnections)
				rt = tr
			}
			resp, err := (&http.Client{Transport: rt}).Do(testkit.Request(t, url, "alice-token"))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Proto != proto || resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				t.Fatalf("got %s %d, want %s 200", resp.Proto, resp.StatusCode, proto)
			}
			s := testkit.ReadStream(resp)
			t.Cleanup(func() { s.Close(); <-s.Done() })
			msg := fmt.Sprintf(`{"recipient_id":"alice","proto":%q}`, proto)
			rs.Publish(t, defaultChannel, msg)
			if ev := s.Next(t, 5*time.Second); ev.Data != msg {
				t.Fatalf("got %q", ev.Data)
			}
		})
	}
}
