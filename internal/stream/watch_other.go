//go:build !linux

package stream

import (
	"errors"
	"net"
)

// poller is Linux's (watch_linux.go); elsewhere every taken-over stream gets
// a reader goroutine (Set.read).
type poller struct{}

func newPoller(func(id uint64)) (*poller, error) {
	return nil, errors.New("no poller on this system")
}

func (*poller) watch(uint64, net.Conn) error { return errors.New("no poller on this system") }
func (*poller) unwatch(net.Conn)             {}
func (*poller) close()                       {}
