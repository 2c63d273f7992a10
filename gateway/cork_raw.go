package gateway

import (
	"net"
	"syscall"
)

// plainSocket returns the raw connection of c when the bytes written to c
// go to a TCP socket unchanged (no TLS): a TCP connection, or one wrapped
// by NewListener, whose writes are the socket's. It is nil otherwise.
func plainSocket(c net.Conn) syscall.RawConn {
	if f, ok := c.(*framingConn); ok {
		c = f.NetConn()
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// tryData writes a final, unmasked text or binary frame without blocking,
// for a caller that must not wait on the client (a consumer's goroutine
// handing over its reply). When nothing else is collected or corked, the
// frame goes to the socket with one non-blocking system call; what the
// socket does not take (all of it, when the writer is busy or the socket
// is not plain TCP) waits in the buffer, and tryData reports false: the
// caller must then have it written by a goroutine that may block
// (flushPending). Errors are the socket's (the connection is broken) or
// errCloseSent.
func (w *corkWriter) tryData(binaryFrame bool, payload []byte) (whole bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closeSent {
		return false, errCloseSent
	}
	if w.raw == nil || w.corked || len(w.buf) > 0 {
		w.buf = appendFrame(w.buf, binaryFrame, payload)
		return false, nil
	}
	bp := framePool.Get().(*[]byte)
	b := appendFrame((*bp)[:0], binaryFrame, payload)
	if w.rw == nil {
		w.rw = newRawWriter(w.raw)
	}
	n, err := w.rw.write(b)
	if err == nil && n < len(b) {
		w.buf = append(w.buf, b[n:]...)
	}
	if cap(b) <= 4<<10 {
		*bp = b[:0]
		framePool.Put(bp)
	}
	if err != nil {
		return false, err
	}
	return len(w.buf) == 0, nil
}

// flushPending writes, blocking as writes do, what tryData left in the
// buffer.
func (w *corkWriter) flushPending() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.corked {
		return nil // written with the batch
	}
	return w.flushLocked()
}
