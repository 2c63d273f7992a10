//go:build unix

package gateway

import (
	"os"
	"syscall"

	"github.com/gochannels/channels/internal/rawio"
)

// rawReads reports whether idleConn can read sockets here.
const rawReads = true

// attempt is one read(2) for idleConn.read. When the socket has nothing it
// puts the chunk back and asks the poller to wait.
func (c *idleConn) attempt(fd uintptr) bool {
	b := c.into
	if b == nil {
		if c.chunk == nil {
			c.chunk = readChunks.Get().(*[]byte)
		}
		b = *c.chunk
	}
	for {
		n, err := rawio.Read(int(fd), b)
		switch err {
		case nil:
			c.n = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if c.into == nil {
				c.release()
			}
			return false
		default:
			c.n, c.rerr = 0, os.NewSyscallError("read", err)
			return true
		}
	}
}
