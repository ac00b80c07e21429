package auth

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/metrics"
)

// Options configure a Client.
type Options struct {
	// URL is the auth API endpoint: a GET with the credentials.
	URL string
	// UserField is the field of a 200 answer holding the user id.
	UserField string
	// GroupsField, when set, is the field of a 200 answer holding the
	// user's groups (see message.UserGroups).
	GroupsField string
	// Timeout bounds a check, its wait for a slot included.
	Timeout time.Duration
	// CacheTTL, when positive, is how long a successful answer is reused.
	CacheTTL time.Duration
	// Concurrency is how many calls may be in flight at once.
	Concurrency int
	Logger      *zap.Logger
	Metrics     *metrics.Set
}

// Client asks the auth API who credentials belong to. One client, with
// pooled keep-alive connections, serves every stream of a handler.
// Concurrent checks of the same credentials share one call (a flight), at
// most Concurrency calls are in flight at once (slots), and successful
// answers may be cached for a short time.
type Client struct {
	url         string
	userField   string
	groupsField string
	timeout     time.Duration
	client      *http.Client
	logger      *zap.Logger
	m           *metrics.Set
	slots       *slots
	cache       *cache // nil when off

	mu      sync.Mutex
	flights map[Key]*flight // checks not yet answered, by credentials

	failMu      sync.Mutex
	failLogged  time.Time // when a failed call was last logged
	failSkipped int       // failed calls not logged since
}

// New returns a client; it connects to the auth API on first use.
func New(opts Options) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// The slots already keep the requests in flight to Concurrency; the
	// pool matches them, so that no request waits for a connection and no
	// connection is dialled only to be closed as idle.
	tr.MaxIdleConnsPerHost = opts.Concurrency
	tr.MaxConnsPerHost = opts.Concurrency
	var c *cache
	if opts.CacheTTL > 0 {
		c = newCache(opts.CacheTTL)
	}
	return &Client{
		url:         opts.URL,
		userField:   opts.UserField,
		groupsField: opts.GroupsField,
		timeout:     opts.Timeout,
		logger:      opts.Logger,
		m:           opts.Metrics,
		slots:       newSlots(opts.Concurrency),
		cache:       c,
		flights:     make(map[Key]*flight),
		client: &http.Client{
			Transport: tr,
			// A redirect is a misconfigured auth_url; following it could
			// hand the token to another host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Close closes the idle connections to the auth API.
func (a *Client) Close() { a.client.CloseIdleConnections() }

// Identity is who the auth API says credentials belong to.
type Identity struct {
	User   string   // the canonical user id
	Groups []string // the user's groups, sorted; nil when none (or groups are off)
}

// Check returns the identity creds belong to, or the refusal for the
// client. client is the key under which the check queues for a slot: the
// client's address. A connect storm of many streams with the same
// credentials makes one auth API call, not one per stream; a request whose
// client has left makes none. The wait, slot included, ends at the
// timeout with 504.
func (a *Client) Check(ctx context.Context, client string, creds Credentials) (Identity, *Error) {
	key := creds.Key()
	if a.cache != nil {
		if id, ok := a.cache.get(key); ok {
			return id, nil
		}
	}
	if ctx.Err() != nil {
		// A stream reset before its check starts asks nothing.
		a.m.AuthAbandoned.Inc()
		return Identity{}, unavailable(ctx.Err())
	}
	wait, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	f, me := a.join(wait, key, client, creds)
	select {
	case <-f.done:
		return f.id, f.err
	case <-wait.Done():
	}
	select {
	case <-f.done: // answered at the same moment: take the answer
		return f.id, f.err
	default:
	}
	a.leave(f, me)
	if ctx.Err() != nil {
		return Identity{}, unavailable(ctx.Err())
	}
	return Identity{}, timedOut(errors.New("no answer within auth_timeout, waiting for a slot included"))
}
