//go:build !unix

package stream

import "net"

// tryWrite writes nothing where the platform offers no write(2) on the
// socket (Windows): every write then goes through net.Conn.Write under a
// write deadline, which costs two timer updates per write but keeps every
// guarantee (write_timeout, a departed client noticed at the next write).
func tryWrite(*net.TCPConn, []byte) (int, error) { return 0, nil }
