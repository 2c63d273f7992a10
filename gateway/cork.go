package gateway

import (
	"net"
	"sync"
	"time"
)

// corkLimit is the most bytes a corked socket collects before it writes
// through.
const corkLimit = 64 << 10

// corkWriter sits between the WebSocket library's buffered writer and the
// socket. The library flushes every frame with its own write system call;
// while a connection has several frames queued, the drain loop corks the
// socket so that they collect here and reach the kernel in one write when it
// uncorks. Writes made by other goroutines meanwhile (pings, the echo of a
// client's close) join the batch, in order. The socket's write deadline
// bounds a corked batch, so a client that does not read is still dropped
// after WriteTimeout.
type corkWriter struct {
	conn net.Conn

	mu     sync.Mutex
	corked bool
	buf    []byte
}

// Write implements io.Writer for the library's buffered writer.
func (w *corkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.corked && len(w.buf)+len(p) <= corkLimit {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if err := w.flushLocked(); err != nil {
		return 0, err
	}
	return w.conn.Write(p)
}

// cork starts collecting writes until uncork; the socket's write deadline is
// set to now+timeout (none when timeout is not positive).
func (w *corkWriter) cork(timeout time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.corked = true
	if timeout > 0 {
		_ = w.conn.SetWriteDeadline(time.Now().Add(timeout))
	}
}

// uncork writes what was collected in one call and clears the deadline.
func (w *corkWriter) uncork() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.corked = false
	err := w.flushLocked()
	_ = w.conn.SetWriteDeadline(time.Time{})
	if cap(w.buf) > corkLimit {
		w.buf = nil
	}
	return err
}

func (w *corkWriter) flushLocked() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.conn.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}
