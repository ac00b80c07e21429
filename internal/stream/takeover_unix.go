//go:build unix

package stream

import (
	"net"
	"syscall"
)

// tryWrite writes what the socket takes of b without waiting; 0 when it
// is full. Go's own Write would park the goroutine on a full socket under
// a deadline; a direct write(2) on the non-blocking descriptor does not.
func tryWrite(conn *net.TCPConn, b []byte) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var errno error
	// The descriptor is held open (and locked for writing) while f runs.
	err = rc.Write(func(fd uintptr) bool {
		n, errno = syscall.Write(int(fd), b)
		return true // never wait here
	})
	switch {
	case err != nil: // closed (abort)
		return 0, err
	case errno == syscall.EAGAIN || errno == syscall.EINTR:
		return 0, nil
	case errno != nil:
		return 0, errno
	}
	return max(n, 0), nil
}
