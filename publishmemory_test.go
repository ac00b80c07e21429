package notify

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// batchBody is a JSON array of n messages of size bytes each, generated as
// it is read: it allocates nothing per read, and counts what was read
// (atomically: the transport may go on reading after the answer came).
type batchBody struct {
	msg    []byte // one message followed by a comma
	n      int
	size   int64 // the whole body
	served atomic.Int64
}

func newBatchBody(n, size int) *batchBody {
	head := `{"recipient_id":"alice","pad":"`
	msg := head + strings.Repeat("x", size-len(head)-2) + `"},`
	return &batchBody{msg: []byte(msg), n: n, size: int64(2 + n*len(msg) - 1)}
}

func (b *batchBody) Read(p []byte) (int, error) {
	served := b.served.Load()
	if served >= b.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), b.size-served)]
	for i := range p {
		at := served + int64(i)
		switch {
		case at == 0:
			p[i] = '['
		case at == b.size-1:
			p[i] = ']'
		default:
			p[i] = b.msg[(at-1)%int64(len(b.msg))]
		}
	}
	b.served.Add(int64(len(p)))
	return len(p), nil
}

// heapPeak samples the heap in use until stop is called, and returns its
// growth at the highest sample over its size at the start (after a GC).
func heapPeak() (stop func() uint64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	done := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		top := base
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			top = max(top, ms.HeapAlloc)
			select {
			case <-done:
				peak <- top - base
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		return <-peak
	}
}

// TestPublishMemory publishes an array of 60 messages of 1 MB (60 MB,
// under max_body's default), with and without Content-Length, and samples
// the heap meanwhile: a request holds at most 1.5 times its body.
func TestPublishMemory(t *testing.T) {
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, testkit.Users("alice"))
	base := serve(t, rs, auth, `
	notify_publish /publish {
		redis {redis}
		# Reading 64 MB takes seconds under the race detector.
		body_timeout 2m
	}`)
	for _, withLength := range []bool{true, false} {
		name := map[bool]string{true: "Content-Length", false: "chunked"}[withLength]
		t.Run(name, func(t *testing.T) {
			body := newBatchBody(60, 1_000_000)
			var reader io.Reader = body
			if !withLength {
				reader = struct{ io.Reader }{body} // hides the length
			}
			req := newRequest(t, http.MethodPost, base+"/publish", "application/json", reader)
			if withLength {
				req.ContentLength = body.size
			}
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			stop := heapPeak()
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				stop()
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			growth := stop()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("status %d %s", resp.StatusCode, got)
			}
			ratio := float64(growth) / float64(body.size)
			t.Logf("body %.1f MB, heap grew by %.1f MB at its peak: %.2fx", float64(body.size)/1e6, float64(growth)/1e6, ratio)
			if ratio > 1.5 {
				t.Errorf("publishing held %.2f times the body", ratio)
			}
		})
	}
}
