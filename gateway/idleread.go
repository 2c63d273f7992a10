package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// An idle WebSocket should cost as little as the connection itself. Two
// things would otherwise stay with every socket for its whole life: a read
// buffer, and a reader goroutine whose stack grew while it parked deep in
// the WebSocket library's frame reader. idleConn removes both on plain TCP
// sockets:
//
//   - It is the connection the library reads, through a small bufio.Reader
//     (idleBufferSize). Bytes come off the socket into a pooled chunk
//     (readChunkSize) taken just before the read(2) and put back as soon as
//     the socket has nothing (EAGAIN) or the chunk is drained, so a socket
//     waiting for its client holds no read buffer.
//   - The read loop waits for the client (await) before it calls into the
//     library, so the goroutine parks a few frames deep; the garbage
//     collector shrinks a parked goroutine's stack to the 2 KiB minimum when
//     it uses less than a quarter of it, and new read loops start small.
//
// The reads are the socket's own: one read(2) per wake-up, as before, and
// the HTTP framing check (framingConn) is skipped, as it has nothing to
// check once the connection is a WebSocket.
//
// The read loop waits outside the library, so the library's closing
// handshake (websocket.Conn.Close, which reads the client's answer) may
// read while the read loop waits. Reads hold mu, so the handshake waits for
// the pending read to end (its timeout closes the socket, which ends it);
// and the read loop looks at the library's buffer only under gate and
// before the handshake starts (shouldWait, closeStarts). Close and
// deadlines are the connection's.
type idleConn struct {
	net.Conn // the hijacked connection: Close, Write (unused), deadlines, addresses
	rc       syscall.RawConn

	mu sync.Mutex // held by a read, also while it waits

	gate     sync.Mutex // the read loop's look at the library's buffer
	closeRun bool       // the library's closing handshake may be reading

	chunk    *[]byte // pooled; holds unread bytes chunk[off:end], else nil
	off, end int
	err      error // the socket's error, returned once the chunk is drained

	// hot is the read deadline set while the read loop waits as a busy
	// socket's (see awaitHot), zero when none is set.
	hot time.Time

	// one read(2), bound once so that a read allocates nothing
	into []byte // the caller's buffer for a large read; nil reads into a chunk
	n    int
	rerr error
	fn   func(fd uintptr) bool

	// Under parking.mu: whether the socket is registered in the parker's
	// set (parked, or woken since), and its descriptor there.
	inSet    bool
	parkedFd int32
}

// Close takes the socket out of the parker's set, restarting a parked read
// loop, which then finds the socket closed (see parker), and closes it.
// Every close of a socket read through an idleConn goes through here: the
// library's (its reads and writes go through idleConn and corkWriter) and
// the gateway's.
func (c *idleConn) Close() error {
	parking.release(c)
	return c.Conn.Close()
}

// idleBufferSize is the size of the bufio.Reader the WebSocket library
// reads frames through when idleConn is under it: a frame header and a
// short payload take one read of the chunk. (bufio's minimum is 16.)
const idleBufferSize = 128

// readChunkSize is the size of the pooled chunks a socket reads into.
// Reads of at least this many bytes go straight into the caller's buffer.
const readChunkSize = 4 << 10

var readChunks = sync.Pool{New: func() any { b := make([]byte, readChunkSize); return &b }}

// newIdleReader wraps the hijacked conn for reading when rc, its raw
// socket, is not nil (see plainSocket), returning the connection and the
// bufio.Reader to hand to the library; buffered is what net/http read past
// the handshake, which the reader serves first. It returns nil, nil when
// the socket cannot be read raw (TLS, or no raw reads on this platform).
func newIdleReader(conn net.Conn, rc syscall.RawConn, buffered *bufio.Reader) (*idleConn, *bufio.Reader) {
	if rc == nil || !rawReads {
		return nil, nil
	}
	c := &idleConn{Conn: conn, rc: rc}
	c.fn = c.attempt
	if n := buffered.Buffered(); n > 0 {
		b, _ := buffered.Peek(n)
		if n > readChunkSize {
			big := make([]byte, n)
			c.chunk = &big
		} else {
			c.chunk = readChunks.Get().(*[]byte)
		}
		c.end = copy(*c.chunk, b)
	}
	return c, bufio.NewReaderSize(c, idleBufferSize)
}

// Read serves unread bytes of the chunk, else reads the socket: straight
// into b when b is at least a chunk long, into a fresh chunk otherwise.
// It blocks until the socket has bytes, an error or EOF.
func (c *idleConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off == c.end {
		if c.err != nil {
			return 0, c.err
		}
		if !c.hot.IsZero() {
			c.clearHot() // the rest of a frame is late: no limit on it
		}
		if len(b) >= readChunkSize {
			return c.read(b)
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(b, (*c.chunk)[c.off:c.end])
	c.off += n
	if c.off == c.end {
		c.release()
	}
	return n, nil
}

// shouldWait reports whether the read loop may wait in await: whether br,
// the library's buffer over c, is empty and no closing handshake has
// started (after which the library reads br itself).
func (c *idleConn) shouldWait(br *bufio.Reader) bool {
	c.gate.Lock()
	defer c.gate.Unlock()
	return !c.closeRun && br.Buffered() == 0
}

// closeStarts is called before the library's closing handshake, which
// reads the library's buffer outside the read loop.
func (c *idleConn) closeStarts() {
	c.gate.Lock()
	c.closeRun = true
	c.gate.Unlock()
}

// await blocks until the socket has bytes to read (which it reads into a
// chunk) or fails; the failure is kept for the next Read. A caller with
// bytes already buffered above the socket must not wait.
func (c *idleConn) await() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off < c.end || c.err != nil {
		return
	}
	if !c.hot.IsZero() {
		c.clearHot() // a busy wait's deadline, left when only pings and pongs came
	}
	c.err = c.fill()
}

// takeControl takes the pings and pongs at the head of the bytes read
// (the library's buffer is empty: the read loop waited), handing each
// payload to ws, and reports whether bytes remain for the library. The
// library's frame reader handles a control frame and goes on waiting for a
// data frame inside it, where an idle socket could not park; read here, a
// keepalive's pong leaves the read loop free to park again. Anything else
// (a data or close frame, a frame not whole yet, one the library must
// reject) is left to the library.
func (c *idleConn) takeControl(ws *wsConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.off < c.end {
		b := (*c.chunk)[c.off:c.end]
		if len(b) < 2 || (b[0] != 0x89 && b[0] != 0x8A) || b[1]&0x80 == 0 {
			return true
		}
		n := int(b[1] & 0x7F)
		if n > 125 || len(b) < 6+n {
			return true
		}
		var payload [125]byte
		mask := b[2:6]
		for i := range n {
			payload[i] = b[6+i] ^ mask[i%4]
		}
		c.off += 6 + n
		if b[0] == 0x8A {
			ws.pongReceived(payload[:n])
		} else {
			ws.pingReceived(payload[:n])
		}
	}
	c.release()
	return c.err != nil // an error (or the end) after the frames: the library reports it
}

// hotWait is how long the read loop of a busy socket waits for the next
// frame on a stack kept at its size (see awaitHot) before it waits as an
// idle socket's does.
const hotWait = time.Second

// awaitHot is await for the read loop of a busy socket. Sending a frame's
// message grows the read loop's stack (over Redis, the layer's send path;
// in one process, the consumer, which may run in the read loop: see
// package inline). The garbage collector halves the stack of a parked
// goroutine that uses less than a quarter of it, and the next frame grows
// it again, copying it each time; so the caller waits with a padded
// frame below it (see awaitPadded), for at most hotWait since last, when
// the last frame came. It reports false when no frame came by then: the
// read loop then waits with await, and its stack shrinks.
//
// The wait is bounded by a read deadline on the socket, moved at most
// every hotWait/2. A read of the socket after the wait (the library
// reading the rest of a frame that did not come whole) lifts it first
// (see Read).
func (c *idleConn) awaitHot(last time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off < c.end || c.err != nil {
		return true
	}
	if c.hot.Sub(last) < hotWait/2 {
		c.hot = last.Add(hotWait)
		_ = c.SetReadDeadline(c.hot)
	}
	err := c.fill()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.clearHot()
		return false
	}
	c.err = err
	return true
}

// clearHot lifts the read deadline awaitHot set. c.mu is held.
func (c *idleConn) clearHot() {
	c.hot = time.Time{}
	_ = c.SetReadDeadline(time.Time{})
}

// fill reads the socket into a chunk, waiting for it in the poller
// without holding one.
func (c *idleConn) fill() error {
	n, err := c.read(nil)
	if err != nil {
		return err
	}
	c.off, c.end = 0, n
	return nil
}

// read makes one read(2) into b (into a chunk when b is nil), waiting in
// the poller while the socket has nothing. End of stream is io.EOF.
func (c *idleConn) read(b []byte) (int, error) {
	c.into = b
	cerr := c.rc.Read(c.fn)
	n, err := c.n, c.rerr
	c.into, c.rerr = nil, nil
	if cerr != nil {
		c.release()
		return 0, cerr
	}
	if err != nil {
		c.release()
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	if n == 0 {
		c.release()
		return 0, io.EOF
	}
	return n, nil
}

func (c *idleConn) release() {
	if c.chunk != nil {
		if cap(*c.chunk) == readChunkSize {
			readChunks.Put(c.chunk)
		}
		c.chunk = nil
	}
	c.off, c.end = 0, 0
}
