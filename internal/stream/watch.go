package stream

import (
	"crypto/tls"
	"net"
	"syscall"
)

// A Set notices a taken-over stream's client leaving without a goroutine per
// stream: on Linux one goroutine per Set waits in epoll_wait on an epoll
// instance of its own (poller, watch_linux.go), where each stream's socket
// is registered for the peer closing or resetting it. Where that is not
// available (another OS, or a connection that exposes no file descriptor),
// a stream gets a reader goroutine instead (Set.read): it reads until the
// client closes the connection. Either way a half-open connection (a
// client that vanished without closing) is found by the next write: the
// heartbeat's, within write_timeout.

// rawConn returns the socket beneath conn (a TLS connection's included),
// or nil when it has none.
func rawConn(conn net.Conn) syscall.RawConn {
	for {
		switch c := conn.(type) {
		case *tls.Conn:
			conn = c.NetConn()
			continue
		case syscall.Conn:
			rc, err := c.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		}
		return nil
	}
}
