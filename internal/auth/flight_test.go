package auth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/testkit"
)

// gatedAuthAPI answers {"user_id": <token>} to every token, but holds the
// requests for the tokens in held until they are let go, and notes any
// request whose client cancelled it before its answer.
type gatedAuthAPI struct {
	*httptest.Server
	arrived   chan string // tokens, as their requests arrive
	cancelled atomic.Int64

	mu   sync.Mutex
	held map[string]chan struct{}
}

func startGatedAuthAPI(t *testing.T, held ...string) *gatedAuthAPI {
	t.Helper()
	a := &gatedAuthAPI{arrived: make(chan string, 10000), held: map[string]chan struct{}{}}
	for _, tok := range held {
		a.held[tok] = make(chan struct{})
	}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		a.arrived <- token
		a.mu.Lock()
		gate := a.held[token]
		a.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				a.cancelled.Add(1)
				return
			}
		}
		fmt.Fprintf(w, `{"user_id":%q}`, token)
	}))
	t.Cleanup(func() {
		a.mu.Lock()
		for tok, gate := range a.held {
			close(gate)
			delete(a.held, tok)
		}
		a.mu.Unlock()
		a.Close()
	})
	return a
}

// let answers the held requests for token.
func (a *gatedAuthAPI) let(token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	close(a.held[token])
	delete(a.held, token)
}

// next returns the token of the next request to arrive.
func (a *gatedAuthAPI) next(t *testing.T) string {
	t.Helper()
	select {
	case tok := <-a.arrived:
		return tok
	case <-time.After(5 * time.Second):
		t.Fatal("no auth API request within 5s")
		return ""
	}
}

// quiet fails when a request arrives within d.
func (a *gatedAuthAPI) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case tok := <-a.arrived:
		t.Fatalf("unexpected auth API request for %q", tok)
	case <-time.After(d):
	}
}

func newTestClient(t *testing.T, url string, timeout time.Duration, concurrency int) *Client {
	t.Helper()
	a := New(Options{URL: url, UserField: "user_id", Timeout: timeout, Concurrency: concurrency,
		Logger: zap.NewNop(), Metrics: metrics.New()})
	t.Cleanup(a.Close)
	return a
}

type authResult struct {
	id  string
	err *Error
}

// check runs userID in a goroutine and returns where its result will be.
func (a *Client) checkAsync(ctx context.Context, client, token string) <-chan authResult {
	ch := make(chan authResult, 1)
	go func() {
		id, err := a.Check(ctx, client, Credentials{Token: token})
		ch <- authResult{id.User, err}
	}()
	return ch
}

// waiters returns how many requests wait for the flight of token, or -1
// when there is none.
func (a *Client) waiters(token string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.flights[Credentials{Token: token}.Key()]
	if f == nil {
		return -1
	}
	return f.waiters.Len()
}

func result(t *testing.T, ch <-chan authResult) authResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("userID did not return within 5s")
		return authResult{}
	}
}

// TestFlightNoCallWhenClientGone: a request whose client left before its
// check starts makes no auth API call.
func TestFlightNoCallWhenClientGone(t *testing.T) {
	api := startGatedAuthAPI(t)
	a := newTestClient(t, api.URL, 5*time.Second, 4)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	abandoned := testutil.ToFloat64(a.m.AuthAbandoned)
	if _, err := a.Check(ctx, "198.51.100.1", Credentials{Token: "alice"}); err == nil {
		t.Fatal("userID succeeded for a client that had left")
	}
	api.quiet(t, 200*time.Millisecond)
	if got := testutil.ToFloat64(a.m.AuthAbandoned) - abandoned; got != 1 {
		t.Errorf("auth_abandoned_total rose by %v, want 1", got)
	}
}

// TestFlightAbandonedWhenAllWaitersLeave: a check waiting for a slot stays
// queued while one of its waiters is left, and leaves the queue the moment
// the last one goes; it is never sent.
func TestFlightAbandonedWhenAllWaitersLeave(t *testing.T) {
	api := startGatedAuthAPI(t, "slow")
	a := newTestClient(t, api.URL, 5*time.Second, 1)
	slow := a.checkAsync(t.Context(), "198.51.100.1", "slow")
	if tok := api.next(t); tok != "slow" {
		t.Fatalf("first request for %q", tok)
	}
	abandoned := testutil.ToFloat64(a.m.AuthAbandoned)
	var cancels []context.CancelFunc
	var results []<-chan authResult
	for i := range 3 {
		ctx, cancel := context.WithCancel(t.Context())
		cancels = append(cancels, cancel)
		results = append(results, a.checkAsync(ctx, fmt.Sprintf("198.51.100.%d", 2+i), "x"))
	}
	testkit.WaitFor(t, 5*time.Second, "three waiters on one queued flight", func() bool { return a.waiters("x") == 3 })
	if n, _ := a.slots.queued(); n != 1 {
		t.Fatalf("%d checks queued, want 1 for three waiters", n)
	}
	for i, cancel := range cancels[:2] {
		cancel()
		result(t, results[i])
	}
	if w := a.waiters("x"); w != 1 {
		t.Fatalf("%d waiters after two left, want 1", w)
	}
	if n, _ := a.slots.queued(); n != 1 {
		t.Fatalf("%d checks queued with one waiter left, want 1", n)
	}
	cancels[2]()
	result(t, results[2])
	// userID has returned: the queue must already be empty.
	if n, _ := a.slots.queued(); n != 0 {
		t.Errorf("%d checks queued after every waiter left, want 0", n)
	}
	if w := a.waiters("x"); w != -1 {
		t.Errorf("the abandoned flight is still joinable (%d waiters)", w)
	}
	if got := testutil.ToFloat64(a.m.AuthAbandoned) - abandoned; got != 1 {
		t.Errorf("auth_abandoned_total rose by %v, want 1", got)
	}
	api.let("slow")
	if r := result(t, slow); r.err != nil || r.id != "slow" {
		t.Fatalf("slow check: %q, %v", r.id, r.err)
	}
	api.quiet(t, 300*time.Millisecond)
	if _, free := a.slots.queued(); free != 1 {
		t.Errorf("%d slots free at the end, want 1", free)
	}
}

// TestFlightSentCallOutlivesItsClients: once sent, a request is neither
// cancelled when its client leaves nor gives up its slot before the auth
// API answers; a new request with the same credentials joins it.
func TestFlightSentCallOutlivesItsClients(t *testing.T) {
	api := startGatedAuthAPI(t, "x")
	a := newTestClient(t, api.URL, 5*time.Second, 1)
	inFlight := testutil.ToFloat64(a.m.AuthInFlight)

	ctx, cancel := context.WithCancel(t.Context())
	first := a.checkAsync(ctx, "198.51.100.1", "x")
	if tok := api.next(t); tok != "x" {
		t.Fatalf("request for %q", tok)
	}
	cancel()
	if r := result(t, first); r.err == nil {
		t.Fatal("the client that left got an answer")
	}
	if got := testutil.ToFloat64(a.m.AuthInFlight) - inFlight; got != 1 {
		t.Errorf("auth_in_flight is %v above where it was, want 1", got)
	}
	other := a.checkAsync(t.Context(), "198.51.100.2", "y")
	joiner := a.checkAsync(t.Context(), "198.51.100.3", "x")
	testkit.WaitFor(t, 5*time.Second, "the joiner on the sent flight", func() bool { return a.waiters("x") == 1 })
	// The slot is still taken by the request the first client left.
	api.quiet(t, 300*time.Millisecond)

	api.let("x")
	if r := result(t, joiner); r.err != nil || r.id != "x" {
		t.Fatalf("joiner: %q, %v", r.id, r.err)
	}
	if tok := api.next(t); tok != "y" {
		t.Fatalf("next request for %q, want y", tok)
	}
	if r := result(t, other); r.err != nil || r.id != "y" {
		t.Fatalf("other: %q, %v", r.id, r.err)
	}
	if n := api.cancelled.Load(); n != 0 {
		t.Errorf("%d auth API requests were cancelled by their client", n)
	}
	testkit.WaitFor(t, time.Second, "auth_in_flight back", func() bool { return testutil.ToFloat64(a.m.AuthInFlight) == inFlight })
}

// TestFlightTimesOutWaitingForASlot: auth_timeout bounds the whole wait,
// the queue for a slot included.
func TestFlightTimesOutWaitingForASlot(t *testing.T) {
	api := startGatedAuthAPI(t, "slow", "x")
	a := newTestClient(t, api.URL, 300*time.Millisecond, 1)
	inFlight := testutil.ToFloat64(a.m.AuthInFlight)
	slow := a.checkAsync(t.Context(), "198.51.100.1", "slow")
	api.next(t)
	start := time.Now()
	r := result(t, a.checkAsync(t.Context(), "198.51.100.2", "x"))
	if r.err == nil || r.err.Status != http.StatusGatewayTimeout {
		t.Fatalf("got %q, %v; want 504", r.id, r.err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("timed out after %s; auth_timeout is 300ms", el)
	}
	if r := result(t, slow); r.err == nil || r.err.Status != http.StatusGatewayTimeout {
		t.Fatalf("slow check: %q, %v; want 504", r.id, r.err)
	}
	// x may have been granted the slot slow gave back, and sent: it too
	// ends at auth_timeout.
	testkit.WaitFor(t, 2*time.Second, "auth_in_flight back", func() bool { return testutil.ToFloat64(a.m.AuthInFlight) == inFlight })
}

// TestFlightStress checks many requests over few credentials, leaving at
// random moments (run it under -race): every request gets an answer or
// its refusal, and at the end no flight, waiter or slot is left behind.
func TestFlightStress(t *testing.T) {
	api := startGatedAuthAPI(t)
	a := newTestClient(t, api.URL, 5*time.Second, 3)
	go func() { // drain
		for range api.arrived {
		}
	}()
	inFlight := testutil.ToFloat64(a.m.AuthInFlight)
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for range 50 {
				token := fmt.Sprintf("t%d", rng.IntN(6))
				ctx, cancel := context.WithCancel(t.Context())
				if rng.IntN(2) == 0 {
					time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, cancel)
				}
				id, err := a.Check(ctx, fmt.Sprintf("198.51.100.%d", rng.IntN(4)), Credentials{Token: token})
				if err == nil && id.User != token {
					t.Errorf("token %s got user %q", token, id)
				}
				if err != nil && ctx.Err() == nil {
					t.Errorf("token %s refused while its client waited: %v", token, err)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	testkit.WaitFor(t, 5*time.Second, "every flight to end", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.flights) == 0
	})
	testkit.WaitFor(t, 5*time.Second, "every slot back", func() bool {
		n, free := a.slots.queued()
		return n == 0 && free == 3
	})
	if got := testutil.ToFloat64(a.m.AuthInFlight); got != inFlight {
		t.Errorf("auth_in_flight %v, want %v", got, inFlight)
	}
}
