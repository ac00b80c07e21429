package notify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// The tests in this file run a notify instance (a Caddy process) behind
// each proxy of docs/reverse-proxy.md, configured from the blocks printed
// there, so the page cannot drift from what is tested. Clients speak
// HTTP/2 over TLS to the proxy, as browsers would.

const proxyDoc = "docs/reverse-proxy.md"

// docBlocks returns the fenced blocks of lang in the page, in order.
func docBlocks(t testing.TB, lang string) []string {
	t.Helper()
	raw, err := os.ReadFile(proxyDoc)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, b := range strings.Split(string(raw), "```"+lang+"\n")[1:] {
		b, _, _ = strings.Cut(b, "```")
		blocks = append(blocks, b)
	}
	return blocks
}

// docBlock returns the one block of lang in the page that contains marker.
func docBlock(t testing.TB, lang, marker string) string {
	t.Helper()
	var found []string
	for _, b := range docBlocks(t, lang) {
		if strings.Contains(b, marker) {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d %s blocks with %q, want 1", proxyDoc, len(found), lang, marker)
	}
	return found[0]
}

// replaceAll applies old, new pairs to s; each old must occur in it, so
// that a changed page fails here rather than run untested values.
func replaceAll(t testing.TB, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("%s: %q not found in the block:\n%s", proxyDoc, pairs[i], s)
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// TestBehindProxy runs each proxy of the page in front of a notify
// instance and checks what the page promises: an event published to Redis
// reaches the client in under 100 ms (median), heartbeats pass, a client
// that leaves is noticed, and checks queue for the auth API per client,
// not per proxy, even when a client forges X-Forwarded-For.
func TestBehindProxy(t *testing.T) {
	cert := newTestCert(t)
	proxies := []struct {
		name  string
		start func(t *testing.T, upstream string) string // returns the proxy's base URL
	}{
		{"nginx", func(t *testing.T, upstream string) string {
			port := testkit.FreePort(t)
			conf := replaceAll(t, docBlock(t, "nginx", "proxy_pass"),
				"10.0.0.5:8080", upstream,
				"listen 443 ssl http2;", fmt.Sprintf("listen 127.0.0.1:%d ssl http2;", port),
				"/etc/ssl/notify.example.com.crt", cert.certFile,
				"/etc/ssl/notify.example.com.key", cert.keyFile)
			testkit.StartNginx(t, port, conf)
			return fmt.Sprintf("https://127.0.0.1:%d", port)
		}},
		{"caddy", func(t *testing.T, upstream string) string {
			port := testkit.FreePort(t)
			site := replaceAll(t, docBlock(t, "caddyfile", "reverse_proxy"),
				"10.0.0.5:8080", upstream,
				"notify.example.com {", fmt.Sprintf("https://127.0.0.1:%d {\n\ttls %s %s", port, cert.certFile, cert.keyFile))
			loadCaddyfile(t, fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tstorage file_system %s\n"+
				"\tgrace_period 1s\n\tlog {\n\t\tlevel ERROR\n\t}\n}\n%s", t.TempDir(), site))
			return fmt.Sprintf("https://127.0.0.1:%d", port)
		}},
	}
	for _, proxy := range proxies {
		t.Run(proxy.name, func(t *testing.T) {
			rs := testkit.StartRedis(t)
			auth := startTurnAuthAPI(t, 100*time.Millisecond)
			notify := startDocNotify(t, rs, auth)
			events := proxy.start(t, notify.Addr()) + "/events"
			metrics := notify.base() + "/metrics"
			alice := proxyClient(t, "127.0.0.2", cert.pool)

			s := testkit.OpenStreamWith(t, alice, testkit.Request(t, events, "alice-token"))
			if s.Resp.Proto != "HTTP/2.0" {
				t.Errorf("client got %s from the proxy, want HTTP/2.0", s.Resp.Proto)
			}
			s.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})

			t.Run("latency", func(t *testing.T) {
				c := rs.Client()
				defer c.Close()
				var took []time.Duration
				for i := range 10 {
					msg := fmt.Sprintf(`{"recipient_id":"alice","n":%d}`, i)
					start := time.Now()
					if n, err := c.Publish(t.Context(), defaultChannel, msg).Result(); err != nil || n != 1 {
						t.Fatalf("PUBLISH: %d receivers, %v", n, err)
					}
					if ev := s.Next(t, 2*time.Second); ev.Data != msg {
						t.Fatalf("got %+v, want data %s", ev, msg)
					}
					took = append(took, time.Since(start))
				}
				slices.Sort(took)
				median := took[len(took)/2]
				t.Logf("PUBLISH to event read through %s: median %s, max %s", proxy.name, median, took[len(took)-1])
				if median >= 100*time.Millisecond {
					t.Errorf("median %s from PUBLISH to the event, want under 100ms", median)
				}
			})

			t.Run("heartbeat", func(t *testing.T) {
				// heartbeat 1s: nothing else is sent meanwhile.
				s.Expect(t, testkit.Frame{Kind: testkit.FrameComment, Comment: " ping"})
			})

			t.Run("client leaves", func(t *testing.T) {
				if n := testkit.MetricValue(t, metrics, "caddy_notify_streams_open"); n != 1 {
					t.Fatalf("streams_open = %v before the client leaves, want 1", n)
				}
				start := time.Now()
				s.Close()
				testkit.WaitFor(t, 5*time.Second, "streams_open to drop to 0", func() bool {
					return testkit.MetricValue(t, metrics, "caddy_notify_streams_open") == 0
				})
				t.Logf("notify saw the client leave through %s after %s", proxy.name, time.Since(start).Round(time.Millisecond))
			})

			t.Run("auth turns per client", func(t *testing.T) {
				checkTurnsPerClient(t, events, auth, cert.pool)
			})
		})
	}
}

// startDocNotify runs the page's notify instance as a Caddy process, with
// Redis and the auth API in place of the example ones, a 1s heartbeat, one
// auth slot (so that checks queue), and metrics.
func startDocNotify(t *testing.T, rs *testkit.Redis, auth *turnAuthAPI) *caddyProcess {
	t.Helper()
	global, site, ok := strings.Cut(docBlock(t, "caddyfile", "notify /events"), "\n}\n\n:8080 {\n")
	if !ok {
		t.Fatalf("%s: the notify instance's block is not global options then the site :8080", proxyDoc)
	}
	global = replaceAll(t, strings.TrimPrefix(global, "{\n"),
		"10.0.0.2/32", "127.0.0.1/32") // the proxies connect from 127.0.0.1; clients from 127.0.0.2 and .3
	site = replaceAll(t, strings.TrimSuffix(site, "\n}\n"),
		"redis://10.0.0.6:6379", "{redis}",
		"https://app.internal/api/v1/is_user_auth/", "{auth}\n\t\theartbeat 1s\n\t\tauth_concurrency 1")
	p := newCaddyProcess(t, rs.URL(), auth.URL, global, site+"\n\tmetrics /metrics")
	p.start()
	if err := p.waitUp("/events", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkTurnsPerClient: with one auth slot and an auth API that takes
// 100 ms, one client (127.0.0.2) sends a flood of checks through the proxy,
// each claiming in X-Forwarded-For to come from the other client
// (127.0.0.3); once they queue, the other client asks for a stream. Its
// check must go to the auth API after at most two of the flood's: the one
// in flight and one turn. Keyed by the proxy's address (no
// trusted_proxies), or by the forged leftmost X-Forwarded-For (no
// trusted_proxies_strict), it would wait behind the whole flood.
func checkTurnsPerClient(t *testing.T, events string, auth *turnAuthAPI, pool *x509.CertPool) {
	const flood = 16
	flooder, bob := proxyClient(t, "127.0.0.2", pool), proxyClient(t, "127.0.0.3", pool)
	first := len(auth.order())
	statuses := make(chan string, flood)
	var wg sync.WaitGroup
	for range flood {
		req := testkit.Request(t, events, randomToken())
		req.Header.Set("X-Forwarded-For", "127.0.0.3")
		wg.Go(func() {
			resp, err := flooder.Do(req)
			if err != nil {
				statuses <- err.Error()
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.Status
		})
	}
	// The first check is answered after 100 ms: the others have long
	// arrived and wait for the slot.
	testkit.WaitFor(t, 5*time.Second, "the flood's second auth call", func() bool { return len(auth.order())-first >= 2 })
	sent := len(auth.order())
	start := time.Now()
	s := testkit.OpenStreamWith(t, bob, testkit.Request(t, events, "bob-token"))
	s.Expect(t, testkit.Frame{Kind: testkit.FrameRetry, Retry: "3000"})
	waited := time.Since(start)
	s.Close()
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if st != "401 Unauthorized" {
			t.Errorf("a flood request got %s, want 401 Unauthorized", st)
		}
	}

	order := auth.order()
	at := slices.Index(order, "bob")
	if at < 0 {
		t.Fatalf("bob's check never reached the auth API: %v", order)
	}
	ahead := at - sent // flood checks sent after bob asked, before bob's
	t.Logf("bob's stream opened after %s; %d flood checks went first after bob asked; auth calls: %v",
		waited.Round(time.Millisecond), ahead, order[first:])
	if ahead > 2 {
		t.Errorf("%d flood checks went to the auth API after bob asked and before bob's, want at most 2: "+
			"checks are not queued per client", ahead)
	}
	if n := len(order) - first - 1; n != flood {
		t.Errorf("%d flood checks reached the auth API, want %d", n, flood)
	}
}

// turnAuthAPI is an auth API that takes delay to answer and records whose
// check each call was, in the order they arrive: "alice" and "bob" for
// their tokens (200), "flood" for any other (401).
type turnAuthAPI struct {
	*httptest.Server
	mu    sync.Mutex
	calls []string
}

func startTurnAuthAPI(t testing.TB, delay time.Duration) *turnAuthAPI {
	t.Helper()
	a := &turnAuthAPI{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		who, _ := strings.CutSuffix(token, "-token")
		if who != "alice" && who != "bob" {
			who = "flood"
		}
		a.mu.Lock()
		a.calls = append(a.calls, who)
		a.mu.Unlock()
		time.Sleep(delay)
		w.Header().Set("Content-Type", "application/json")
		if who == "flood" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"detail":"Invalid token"}`)
			return
		}
		_, _ = fmt.Fprintf(w, `{"user_id":%q}`, who)
	}))
	t.Cleanup(a.Close)
	return a
}

// order returns whose checks reached the API, in order.
func (a *turnAuthAPI) order() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

// proxyClient is a client that speaks HTTP/2 over TLS from the loopback
// address src, trusting pool.
func proxyClient(t testing.TB, src string, pool *x509.CertPool) *http.Client {
	t.Helper()
	tr := &http.Transport{
		DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true, // a custom dialer turns it off otherwise
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// testCert is a self-signed certificate for 127.0.0.1, written to files.
type testCert struct {
	certFile, keyFile string
	pool              *x509.CertPool
}

func newTestCert(t testing.TB) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := testCert{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), pool: x509.NewCertPool()}
	c.pool.AddCert(cert)
	for file, block := range map[string]*pem.Block{
		c.certFile: {Type: "CERTIFICATE", Bytes: der},
		c.keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}
