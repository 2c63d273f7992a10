package gateway

import (
	"errors"
	"net"
	"sync"
	"syscall"
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
// client's close) join the batch, in order.
//
// Every write to the socket, corked batch or single frame, is bounded by
// the socket's write deadline, so a client that takes no bytes for timeout
// is dropped: onStall is called and the write fails. Writes larger than
// corkLimit go out in pieces of corkLimit, the deadline moved before each,
// so a large frame to a client that keeps reading is not cut. The deadline
// is moved only when fewer than nine tenths of timeout remain (about once
// per timeout/10 on a busy socket), not set and cleared around each frame:
// a per-frame context with a timeout cost the library twenty allocations
// and a timer per frame.
type corkWriter struct {
	conn    net.Conn
	raw     syscall.RawConn // conn's socket when writes reach it unchanged (see plainSocket), else nil
	rw      *rawWriter      // writes to raw, made at the first tryData
	timeout time.Duration   // the most a write may go without progress; none when not positive
	onStall func()          // called when a write fails on the deadline; may be nil

	mu        sync.Mutex
	corked    bool
	closeSent bool // a close frame went out: data frames are dropped
	buf       []byte
	deadline  int64 // Unix nanoseconds of the write deadline set on conn
}

// Write implements io.Writer for the library's buffered writer.
//
// Data frames of an open connection do not come this way (see writeData),
// only the library's control frames (ping, pong, close), each in one call
// (a control frame is at most 127 bytes, less than the library's buffer,
// which it flushes after every frame), and the handshake's response before
// them. A close frame is therefore recognised here.
func (w *corkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(p) >= 2 && p[0] == 0x88 && int(p[1]) == len(p)-2 {
		w.closeSent = true
	}
	return w.writeLocked(p)
}

// writeFrame writes a whole frame built beforehand (a prepared broadcast),
// unless a close frame went out before it.
func (w *corkWriter) writeFrame(frame []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closeSent {
		return errCloseSent
	}
	_, err := w.writeLocked(frame)
	return err
}

// writeData writes a final, unmasked text or binary frame with payload,
// header and payload in one write (or, corked, in the batch), unless a
// close frame went out before it.
func (w *corkWriter) writeData(binaryFrame bool, payload []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closeSent {
		return errCloseSent
	}
	if n := maxFrameHeader + len(payload); n > corkLimit {
		var hdr [maxFrameHeader]byte
		if _, err := w.writeLocked(appendFrameHeader(hdr[:0], binaryFrame, len(payload))); err != nil {
			return err
		}
		_, err := w.writeLocked(payload)
		return err
	}
	if w.corked && len(w.buf)+maxFrameHeader+len(payload) <= corkLimit {
		w.buf = appendFrame(w.buf, binaryFrame, payload)
		return nil
	}
	bp := framePool.Get().(*[]byte)
	b := appendFrame((*bp)[:0], binaryFrame, payload)
	_, err := w.writeLocked(b)
	if cap(b) <= 4<<10 {
		*bp = b[:0]
		framePool.Put(bp)
	}
	return err
}

// writeLocked writes p, into the corked batch when it fits. w.mu is held.
func (w *corkWriter) writeLocked(p []byte) (int, error) {
	if w.corked && len(w.buf)+len(p) <= corkLimit {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	if err := w.flushLocked(); err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) {
		piece := p[n:min(len(p), n+corkLimit)]
		w.armLocked()
		m, err := w.conn.Write(piece)
		n += m
		if err != nil {
			return n, w.failed(err)
		}
	}
	return n, nil
}

// failed reports a failed write, telling onStall first when the deadline
// passed.
func (w *corkWriter) failed(err error) error {
	var ne net.Error
	if w.onStall != nil && errors.As(err, &ne) && ne.Timeout() {
		w.onStall()
	}
	return err
}

// cork starts collecting writes until uncork.
func (w *corkWriter) cork() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.corked = true
}

// uncork writes what was collected in one call.
func (w *corkWriter) uncork() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.corked = false
	err := w.flushLocked()
	if cap(w.buf) > corkLimit {
		w.buf = nil
	}
	return err
}

func (w *corkWriter) flushLocked() error {
	if len(w.buf) == 0 {
		return nil
	}
	w.armLocked()
	_, err := w.conn.Write(w.buf)
	w.buf = w.buf[:0]
	if err != nil {
		return w.failed(err)
	}
	return nil
}

// armLocked makes sure that at least nine tenths of timeout remain before
// the socket's write deadline.
func (w *corkWriter) armLocked() {
	if w.timeout <= 0 {
		return
	}
	now := time.Now().UnixNano()
	if w.deadline-now >= int64(w.timeout)*9/10 {
		return
	}
	w.deadline = now + int64(w.timeout)
	_ = w.conn.SetWriteDeadline(time.Unix(0, w.deadline))
}
