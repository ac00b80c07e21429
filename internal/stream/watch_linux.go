package stream

import (
	"errors"
	"net"
	"sync"
	"syscall"
)

// poller reports, by stream id, the sockets whose peer closed or reset the
// connection: an epoll instance of its own and one goroutine blocked in
// epoll_wait on it, whatever the number of sockets. Go's own poller cannot
// be asked this without a goroutine parked in Read per socket.
//
// Each socket is registered with EPOLLRDHUP (the peer shut down its
// writing side; EPOLLHUP and EPOLLERR are always reported) and
// EPOLLONESHOT, so it is reported once. The event carries the stream's id,
// never a pointer: a report that comes after the stream ended finds no
// stream with that id. Only the ends of a pipe (its read end registered as
// id 0) stop the goroutine.
type poller struct {
	mu     sync.RWMutex // held for writing only while the descriptors close
	epfd   int
	pipe   [2]int
	closed bool
}

func newPoller(gone func(id uint64)) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	p := &poller{epfd: epfd}
	if err := syscall.Pipe2(p.pipe[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // id 0
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.pipe[0], &ev); err != nil {
		p.closeFDs()
		return nil, err
	}
	go p.run(gone)
	return p, nil
}

var errNoSocket = errors.New("the connection has no socket to watch")

// watch registers conn's socket under id.
func (p *poller) watch(id uint64, conn net.Conn) error {
	rc := rawConn(conn)
	if rc == nil {
		return errNoSocket
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return net.ErrClosed
	}
	var cerr error
	// Control holds the descriptor open while it runs.
	err := rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{
			Events: syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
			Fd:     int32(uint32(id)), Pad: int32(uint32(id >> 32)), // the 64-bit data field
		}
		cerr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	return errors.Join(err, cerr)
}

// unwatch takes conn's socket out of the instance; nothing happens when
// conn is already closed (closing took it out).
func (p *poller) unwatch(conn net.Conn) {
	rc := rawConn(conn)
	if rc == nil {
		return
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
}

// close stops the goroutine, which closes the descriptors.
func (p *poller) close() {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.closed {
		_, _ = syscall.Write(p.pipe[1], []byte{0})
	}
}

func (p *poller) run(gone func(id uint64)) {
	defer func() {
		p.mu.Lock()
		p.closed = true
		p.closeFDs()
		p.mu.Unlock()
	}()
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			// Unreachable with a valid instance. Streams still end on a
			// failed write (heartbeats find a departed client).
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == 0 {
				return
			}
			gone(id)
		}
	}
}

func (p *poller) closeFDs() {
	syscall.Close(p.epfd)
	syscall.Close(p.pipe[0])
	syscall.Close(p.pipe[1])
}
