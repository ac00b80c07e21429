package stream

import (
	"net"
	"runtime"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-notify/notify/internal/index"
	"github.com/caddy-notify/notify/internal/metrics"
	"github.com/caddy-notify/notify/internal/testkit"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func newTestSet() *Set {
	return NewSet(Options{Logger: zap.NewNop(), Metrics: metrics.New()})
}

// watchedStream is a taken-over stream of s writing to conn, whose writer
// never runs.
func watchedStream(s *Set, conn net.Conn) *Stream {
	sub := index.NewSubscriber("u", false, index.NewOwner(index.QueueLimit{Events: 8}))
	st := s.NewStream(sub, index.New(index.Key{}), nil)
	st.out = &takeoverWriter{conn: conn}
	return st
}

// The client closing or resetting its connection ends the stream, noticed
// without a goroutine per stream; a stream removed before its connection
// closes is not reported; a stopped watch ends what it holds and refuses
// more.
func TestSetWatchesTakenOverConnections(t *testing.T) {
	cw := newTestSet()
	t.Cleanup(cw.Stop)
	before := runtime.NumGoroutine()
	const n = 50
	var clients []net.Conn
	var streams []*Stream
	for range n {
		server, client := tcpPair(t)
		st := watchedStream(cw, server)
		if !cw.add(st, server) {
			t.Fatal("add refused before stop")
		}
		clients, streams = append(clients, client), append(streams, st)
	}
	// One poller goroutine for all (on Linux); n readers elsewhere.
	if runtime.GOOS == "linux" {
		if got := runtime.NumGoroutine() - before; got > 1 {
			t.Errorf("%d goroutines for %d watched streams, want 1", got, n)
		}
	}
	// A close and a reset are both noticed.
	clients[0].Close()
	_ = clients[1].(*net.TCPConn).SetLinger(0)
	clients[1].Close()
	for i := range 2 {
		testkit.WaitFor(t, time.Second, "departure noticed", streams[i].sub.IsClosed)
	}
	for _, st := range streams[2:] {
		if st.sub.IsClosed() {
			t.Fatal("a stream whose client stayed was ended")
		}
	}
	// Removed first, then closed by the server, as a stream's end does:
	// nothing is reported for it.
	cw.remove(streams[2])
	streams[2].out.close(false)
	time.Sleep(50 * time.Millisecond)
	if streams[2].sub.IsClosed() {
		t.Error("a removed stream was reported")
	}
	cw.Stop()
	for _, st := range streams[3:] {
		if !st.sub.IsClosed() {
			t.Fatal("stop left a stream open")
		}
	}
	server, _ := tcpPair(t)
	if cw.add(watchedStream(cw, server), server) {
		t.Error("add accepted a stream after stop")
	}
}

// A connection without a socket of its own (here a pipe) is watched by a
// reader goroutine instead.
func TestSetWatchesAConnectionWithoutSocket(t *testing.T) {
	cw := newTestSet()
	t.Cleanup(cw.Stop)
	server, client := net.Pipe()
	st := watchedStream(cw, server)
	if !cw.add(st, server) {
		t.Fatal("add refused")
	}
	client.Close()
	testkit.WaitFor(t, time.Second, "departure noticed", st.sub.IsClosed)
}
