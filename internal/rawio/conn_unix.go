//go:build unix

package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Wrap returns c with Read and Write made by this package's system calls
// when c is a TCP connection, and c itself otherwise. Its other methods
// (Close, deadlines, addresses) are c's; deadlines hold for the new Read
// and Write as they do for c's.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	w := &conn{Conn: tc, rc: rc}
	w.rd.fn = w.rd.read
	w.wr.fn = w.wr.write
	return w
}

// conn is a TCP connection read and written with raw system calls. A Read
// and a Write may run at once, as on any net.Conn; each has its own state,
// bound once so that a call allocates nothing, and its own lock, so that
// concurrent Reads (or Writes) take turns as they do on a net.Conn.
type conn struct {
	net.Conn
	rc     syscall.RawConn
	rd, wr op
}

// op is the state of one read or write through the RawConn.
type op struct {
	mu  sync.Mutex
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

// read makes one read(2); false asks the poller to wait for data.
func (o *op) read(fd uintptr) bool {
	for {
		n, err := Read(int(fd), o.b)
		switch err {
		case nil:
			o.n = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			o.err = err
			return true
		}
	}
}

// write writes all of o.b, asking the poller to wait whenever the socket's
// buffer is full.
func (o *op) write(fd uintptr) bool {
	for len(o.b) > 0 {
		n, err := Write(int(fd), o.b)
		switch err {
		case nil:
			o.n += n
			o.b = o.b[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			o.err = err
			return true
		}
	}
	return true
}

// Unwrap returns the TCP connection under a connection from Wrap, and c
// itself when Wrap did not make it.
func Unwrap(c net.Conn) net.Conn {
	if w, ok := c.(*conn); ok {
		return w.Conn
	}
	return c
}

func (c *conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	o := &c.rd
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b, o.n, o.err = b, 0, nil
	err := c.rc.Read(o.fn)
	n, serr := o.n, o.err
	o.b, o.err = nil, nil
	switch {
	case err != nil: // closed, or past the deadline: already a *net.OpError
		return 0, err
	case serr != nil:
		return 0, c.opError("read", serr)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *conn) Write(b []byte) (int, error) {
	o := &c.wr
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b, o.n, o.err = b, 0, nil
	err := c.rc.Write(o.fn)
	n, serr := o.n, o.err
	o.b, o.err = nil, nil
	switch {
	case err != nil:
		return n, err
	case serr != nil:
		return n, c.opError("write", serr)
	}
	return n, nil
}

func (c *conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, err)}
}
