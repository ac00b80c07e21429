//go:build !linux

package notify

import (
	"errors"
	"net"
)

// poller is Linux's (watch_linux.go); elsewhere every hijacked stream gets
// a reader goroutine (connWatch.read).
type poller struct{}

func newPoller(func(id uint64)) (*poller, error) {
	return nil, errors.New("no poller on this system")
}

func (*poller) watch(uint64, net.Conn) error { return errors.New("no poller on this system") }
func (*poller) unwatch(net.Conn)             {}
func (*poller) close()                       {}
