package notify

import (
	"net/http"
	"testing"

	"github.com/caddy-notify/notify/internal/testkit"
)

// BenchmarkConnect opens and closes one HTTP/1.1 stream per iteration
// against an in-process Caddy (real redis-server, httptest auth API): the
// server-side cost of a connect, auth call and hijack included.
func BenchmarkConnect(b *testing.B) {
	rs := testkit.StartRedis(b)
	auth := testkit.StartAuthAPI(b, testkit.Users("alice"))
	base := serve(b, rs, auth, `
	notify {
		redis {redis}
		auth_url {auth}
	}`)
	req := func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, base+"/", nil)
		r.Header.Set("Authorization", "Bearer alice-token")
		return r
	}
	buf := make([]byte, 64)
	b.ResetTimer()
	for range b.N {
		resp, err := testkit.StreamClient.Do(req())
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%v %v", resp, err)
		}
		if _, err := resp.Body.Read(buf); err != nil { // the retry field
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}
