package main

import (
	"bufio"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// h1Flood is the HTTP/1.1 distinct-token flood: clients connections at
// once, each sending one stream request with a fresh random token (unknown
// to the auth API), giving up giveUp after it started connecting — closing
// with a reset (SO_LINGER 0, so that no TIME_WAIT is left behind to exhaust
// the ports) — and starting over at once with a new connection and a new
// token, until its context ends. A {user} in the URL becomes a random
// number (nchan routes by URL).
type h1Flood struct {
	url     string
	clients int
	giveUp  time.Duration
	src     string // source address; "" any

	attempts atomic.Uint64 // connections tried
	sent     atomic.Uint64 // requests written
	answered atomic.Uint64 // a status line came back in time
	gaveUp   atomic.Uint64 // no answer within giveUp
	statuses errCounts
	errs     errCounts // failed dials, resets before an answer…
}

// run floods until ctx ends and all clients stopped.
func (f *h1Flood) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range f.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.client(ctx)
		}()
	}
	wg.Wait()
}

func (f *h1Flood) client(ctx context.Context) {
	d := net.Dialer{}
	if f.src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(f.src)}
		// Ports are chosen per destination at connect time (the flood
		// opens thousands of connections per second from one address).
		d.Control = bindNoPort
	}
	br := bufio.NewReaderSize(nil, 512)
	req := make([]byte, 0, 256)
	for ctx.Err() == nil {
		u, err := url.Parse(userURL(f.url, rand.IntN(1<<30)))
		if err != nil {
			f.errs.add(err)
			return
		}
		req = append(req[:0], "GET "...)
		req = append(req, u.RequestURI()...)
		req = append(req, " HTTP/1.1\r\nHost: "...)
		req = append(req, u.Host...)
		req = append(req, "\r\nAuthorization: Bearer "...)
		req = appendRandomToken(req)
		req = append(req, "\r\nAccept: text/event-stream\r\n\r\n"...)
		code, err := f.once(ctx, &d, u.Host, req, br)
		switch {
		case err == nil:
			f.answered.Add(1)
			f.statuses.add(statusError(code))
		case ctx.Err() != nil: // the end of the flood, not the server's doing
		case isTimeout(err):
			f.gaveUp.Add(1)
		default:
			f.errs.add(err)
			sleepCtx(ctx, 10*time.Millisecond) // a refusing server is not a busy loop
		}
	}
}

// once makes one attempt and returns the status the server answered.
func (f *h1Flood) once(ctx context.Context, d *net.Dialer, host string, req []byte, br *bufio.Reader) (int, error) {
	f.attempts.Add(1)
	dctx, cancel := context.WithTimeout(ctx, f.giveUp)
	defer cancel()
	c, err := d.DialContext(dctx, "tcp", host)
	if err != nil {
		return 0, err
	}
	stop := context.AfterFunc(dctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer func() {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}()
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	f.sent.Add(1)
	br.Reset(c)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	return parseStatusLine(line)
}

// parseStatusLine reads the code of "HTTP/1.1 401 Unauthorized\r\n".
func parseStatusLine(line []byte) (int, error) {
	if len(line) < 12 || string(line[:5]) != "HTTP/" || line[8] != ' ' {
		return 0, errors.New("bad status line")
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || code < 100 {
		return 0, errors.New("bad status line")
	}
	return code, nil
}

// isTimeout reports whether err is a timeout (a deadline or a context's).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}
