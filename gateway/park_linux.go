//go:build linux

package gateway

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// An idle WebSocket's read loop is parked: its goroutine ends, and the
// socket waits for its client in an epoll set of the gateway's instead of
// in Go's poller, which needs a goroutine blocked on every socket it
// watches. A parked socket costs its connection's state and nothing else:
// no goroutine stack (2 KiB at least, which the garbage collector's goal
// also counts once more), no read buffer (see idleConn).
//
// One waiter goroutine runs while any socket is parked. When a parked
// socket becomes readable (a frame, a pong, a close, the client gone) the
// waiter starts a new read loop for it, which carries on where the parked
// one stopped. A socket is closed through idleConn.Close, which takes it
// out of the set first and starts its read loop, so that the loop finds the
// socket closed and ends the connection as it does for any closed socket.
//
// Registrations are one-shot (EPOLLONESHOT): an event disables the socket
// in the set until it is parked again (EPOLL_CTL_MOD), so that one event
// starts one read loop.
type parker struct {
	mu      sync.Mutex
	epfd    int               // the epoll set, -1 until first used
	wakefd  int               // an eventfd in the set, written to wake the waiter
	parked  map[int32]*wsConn // by file descriptor
	running bool              // the waiter runs
	failed  error             // why nothing is parked any more (the set could not be made, or failed)
	warned  bool              // failed was logged
}

var parking = parker{epfd: -1}

const parkEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// park parks c's read loop: it reports true when the socket is in the set
// and the calling read loop must end without ending the connection (a new
// one starts when the socket is readable), false when the caller must wait
// itself.
func (p *parker) park(c *wsConn) bool {
	in := c.in
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.openLocked() {
		if !p.warned {
			p.warned = true
			c.s.log.Warn("idle WebSockets cannot park: each keeps a goroutine (and its stack) while idle", "error", p.failed)
		}
		return false
	}
	op := syscall.EPOLL_CTL_ADD
	if in.inSet {
		op = syscall.EPOLL_CTL_MOD
	}
	var fd int32
	var err error
	cerr := in.rc.Control(func(sysfd uintptr) {
		fd = int32(sysfd)
		ev := syscall.EpollEvent{Events: parkEvents, Fd: fd}
		err = syscall.EpollCtl(p.epfd, op, int(sysfd), &ev)
	})
	if cerr != nil || err != nil {
		return false // closed meanwhile, or refused: the caller waits itself
	}
	in.inSet = true
	in.parkedFd = fd
	p.parked[fd] = c
	c.s.stats.wsParked.Add(1)
	if !p.running {
		p.running = true
		go p.wait()
	}
	return true
}

// release takes in out of the set before its socket closes; a parked read
// loop starts again, and finds the socket closed.
func (p *parker) release(in *idleConn) {
	p.mu.Lock()
	if !in.inSet {
		p.mu.Unlock()
		return
	}
	in.inSet = false
	_ = in.rc.Control(func(sysfd uintptr) {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(sysfd), nil)
	})
	c := p.parked[in.parkedFd]
	if c != nil && c.in == in {
		p.unparkLocked(in.parkedFd, c)
	} else {
		c = nil
	}
	if len(p.parked) == 0 && p.running {
		p.wakeLocked() // so that the waiter ends
	}
	p.mu.Unlock()
	if c != nil {
		go c.readLoop(true)
	}
}

// openLocked makes the epoll set at first use.
func (p *parker) openLocked() bool {
	if p.failed != nil {
		return false
	}
	if p.epfd >= 0 {
		return true
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		p.failed = os.NewSyscallError("epoll_create1", err)
		return false
	}
	r, _, errno := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		_ = syscall.Close(epfd)
		p.failed = os.NewSyscallError("eventfd2", errno)
		return false
	}
	wakefd := int(r)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(wakefd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = syscall.Close(epfd)
		_ = syscall.Close(wakefd)
		p.failed = os.NewSyscallError("epoll_ctl", err)
		return false
	}
	p.epfd, p.wakefd = epfd, wakefd
	p.parked = make(map[int32]*wsConn)
	return true
}

// unparkLocked takes c, parked under fd, out of the parked sockets; its
// caller starts its read loop. p.mu is held.
func (p *parker) unparkLocked(fd int32, c *wsConn) {
	delete(p.parked, fd)
	c.s.stats.wsParked.Add(-1)
}

func (p *parker) wakeLocked() {
	one := uint64(1)
	_, _ = syscall.Write(p.wakefd, (*[8]byte)(unsafe.Pointer(&one))[:])
}

// wait is the waiter: it starts the read loops of the sockets that become
// readable, and ends when none is parked.
func (p *parker) wait() {
	var (
		events [128]syscall.EpollEvent
		ready  []*wsConn
		buf    [8]byte
	)
	for {
		n, err := syscall.EpollWait(p.epfd, events[:], -1)
		ready = ready[:0]
		p.mu.Lock()
		if err != nil && !errors.Is(err, syscall.EINTR) {
			// Not expected: hand every parked socket back to a read loop
			// of its own, and park no more.
			p.failed = os.NewSyscallError("epoll_wait", err)
			for fd, c := range p.parked {
				p.unparkLocked(fd, c)
				ready = append(ready, c)
			}
		}
		for _, ev := range events[:max(n, 0)] {
			if int(ev.Fd) == p.wakefd {
				_, _ = syscall.Read(p.wakefd, buf[:])
				continue
			}
			if c := p.parked[ev.Fd]; c != nil {
				p.unparkLocked(ev.Fd, c)
				ready = append(ready, c)
			}
		}
		done := len(p.parked) == 0
		if done {
			p.running = false
		}
		p.mu.Unlock()
		for _, c := range ready {
			go c.readLoop(true)
		}
		if done {
			return
		}
	}
}
