package gateway

import (
	"net"
	"os"
	"time"
)

// While a handler runs, net/http reads one byte from the connection in a
// goroutine of its own (its "background read"), to learn that the client
// went away and cancel the request's context. When the handler returns,
// net/http ends that read by setting a read deadline in the past, waits
// for it, and clears the deadline. For a request answered in a few
// milliseconds, as most are, that costs a read(2) that finds nothing, a
// wait in the poller, a wake-up by the deadline and three deadline changes:
// about a tenth of the gateway's CPU per HTTP request over Redis.
//
// A framingConn recognises the background read (a one-byte read while the
// connection is between requests: a complete head, and its body, read)
// and holds it back for bgReadDelay. If net/http ends it within that time
// (the deadline in the past), it ends without touching the socket. If not,
// it becomes the real read it stands for, so a client that goes away
// during a longer request is still noticed, at most bgReadDelay later than
// net/http alone would notice it. A close of the connection ends the wait
// at once.
//
// Any other read, and any deadline other than the one that ends the held
// read, goes to the socket as before. A read that starts with a read
// deadline set is not held: when the handler was quick enough for net/http
// to end the read before it started, the deadline is in the past and the
// read fails at once, as net/http expects. A read deadline set while the
// read is held (by a handler, through http.ResponseController) is on the
// socket when the held read becomes a real one.
var bgReadDelay = 20 * time.Millisecond // a variable for tests

// errBgReadEnded is what a held background read returns when net/http ends
// it: the timeout error net/http expects from its deadline in the past.
var errBgReadEnded = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}

// bgRead is a framingConn's held background read. Its fields are under the
// framingConn's mu.
type bgRead struct {
	held  bool          // a background read is held
	ended bool          // net/http ended it (its deadline in the past)
	wake  chan struct{} // buffered (1): wakes the held read
	timer *time.Timer   // turns the held read into a real one

	// deadline is the socket's read deadline, as last set through the
	// framingConn (zero: none).
	deadline time.Time
}

// betweenRequests reports whether everything read so far ends with a
// complete request (head and body) and at least one request was read: a
// one-byte read then is net/http's background read. Every other read
// net/http makes between requests goes through its 4 KiB bufio.Reader, and
// one during a head or a body is not between requests. c.mu is held.
func (c *framingConn) betweenRequests() bool {
	p := &c.p
	return p.state == fsHead && p.lines == 0 && len(p.line) == 0 && p.heads > 0
}

// holdBgRead holds a one-byte read when it is net/http's background read
// (see bgRead), until net/http ends it, the connection closes or
// bgReadDelay passes. It reports whether net/http ended it; otherwise the
// caller makes the real read.
func (c *framingConn) holdBgRead() (ended bool) {
	c.mu.Lock()
	// A read deadline is set when net/http ended the read before it
	// started (a quick handler): the real read then fails at once, as
	// net/http expects. Nor is a read held past a deadline of its own.
	if !c.betweenRequests() || !c.bg.deadline.IsZero() {
		c.mu.Unlock()
		return false
	}
	bg := &c.bg
	if bg.wake == nil {
		bg.wake = make(chan struct{}, 1)
		bg.timer = time.AfterFunc(bgReadDelay, c.releaseBgRead)
	} else {
		bg.timer.Reset(bgReadDelay)
	}
	bg.held, bg.ended = true, false
	c.mu.Unlock()

	<-bg.wake

	c.mu.Lock()
	ended = bg.ended
	bg.held, bg.ended = false, false
	c.mu.Unlock()
	bg.timer.Stop()
	// A wake-up sent after this one (the timer, racing an end) must not
	// cut the next held read short.
	select {
	case <-bg.wake:
	default:
	}
	return ended
}

// releaseBgRead turns a held background read into a real one (the timer's
// function, and Close's).
func (c *framingConn) releaseBgRead() {
	c.mu.Lock()
	if c.bg.held {
		c.wakeBgRead()
	}
	c.mu.Unlock()
}

// wakeBgRead wakes the held read. c.mu is held.
func (c *framingConn) wakeBgRead() {
	select {
	case c.bg.wake <- struct{}{}:
	default: // already woken
	}
}

// SetReadDeadline ends a held background read when t is in the past (see
// bgRead) and otherwise sets the socket's read deadline.
func (c *framingConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	if c.bg.held && !t.IsZero() && !t.After(time.Now()) {
		c.bg.ended = true
		c.wakeBgRead()
		c.mu.Unlock()
		return nil
	}
	// Set under mu, so that a read being held is never left with a
	// deadline it does not know of.
	err := c.Conn.SetReadDeadline(t)
	c.bg.deadline = t
	c.mu.Unlock()
	return err
}

// SetDeadline sets both deadlines, the read deadline as SetReadDeadline
// does.
func (c *framingConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

// Close ends a held background read (it then reads the closed socket and
// fails, as it would have) and closes the connection.
func (c *framingConn) Close() error {
	err := c.Conn.Close()
	c.releaseBgRead()
	return err
}
