package gateway

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/coder/websocket"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/owned"
)

type wsState uint8

const (
	wsHandshaking wsState = iota
	wsOpen
	wsClosed
)

// outItem is one entry of a connection's outbound queue: a reply message,
// or (msg == nil) a close decided by the server.
type outItem struct {
	msg    channels.Content
	pre    *prepared // msg prepared once for every member of a group, or nil
	code   int
	reason string
	grace  time.Duration // when positive, drop the connection if the close takes longer
	bytes  int64         // payloadSize, counted in wsConn.queued while queued
}

// payloadSize returns the payload bytes of the frame it stands for: what
// the connection's outbound byte limit counts.
func (it outItem) payloadSize() int64 {
	if it.pre != nil {
		return int64(len(it.pre.frame))
	}
	if it.msg == nil {
		return 0
	}
	n := 0
	if t, ok := it.msg["text"].(string); ok {
		n += len(t)
	}
	if b, ok := it.msg["bytes"].([]byte); ok {
		n += len(b)
	}
	return int64(n)
}

// fullLocked reports whether the outbound queue has no room for a frame of
// size bytes (see config.outboundFull). c.mu is held.
func (c *wsConn) fullLocked(size int64) bool {
	return c.s.cfg.outboundFull(len(c.queue), c.queued, size)
}

// wsConn is one WebSocket connection. Its goroutines: the handshake runs in
// ServeHTTP; once open, one goroutine reads frames (readLoop), a writer
// goroutine exists only while the outbound queue is not empty (drain), and
// a single timer (tick) handles pings, the idle limit and the lifetime.
type wsConn struct {
	s      *Server
	reply  string
	path   string
	client string
	// replyV and pathV are reply and path boxed once, for the keys every
	// websocket.receive message carries (boxing a string allocates).
	replyV, pathV any

	mu       sync.Mutex
	slow     bool // closed as a slow client (counted)
	state    wsState
	queue    []outItem
	queued   int64 // payload bytes of the frames in queue (see outItem.bytes)
	writing  bool  // a drain goroutine is running
	closing  bool  // a close is queued or sent: later replies are dropped
	sentCode int   // close code the server sent, 0 if none
	notify   chan struct{}
	room     chan struct{} // closed when the writer takes frames, for senders waiting for room; nil when none waits
	ws       *websocket.Conn
	nc       net.Conn
	cork     *corkWriter
	timer    *time.Timer
	in       *idleConn     // set before readLoop starts; nil unless a plain TCP socket
	br       *bufio.Reader // the WebSocket library's read buffer over in

	opened   time.Time
	lastData atomic.Int64 // unix nanoseconds of the last data frame either way
	lastPing atomic.Int64 // unix nanoseconds of the last ping sent
	muted    atomic.Bool  // no more websocket.receive, no websocket.disconnect
	// sending is set while the read loop sends a frame's message, whose
	// consumer may run in the read loop (see package inline): no pong can
	// be read meanwhile, so no ping is sent.
	sending atomic.Bool
	order   int64 // websocket.receive messages sent; readLoop only

	pingSeq  atomic.Uint64
	pingMu   sync.Mutex
	pingWant string        // the payload of the ping waiting for its pong
	pingDone chan struct{} // receives when that pong comes; nil when no ping waits
	waited   bool          // the read loop waited for a first frame; readLoop only
}

func (c *wsConn) deliver(m channels.Content) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enqueueLocked(outItem{msg: m})
}

// deliverPrepared queues a group message prepared once for all its members
// on this server; an open socket is written its prepared frame. A non-nil
// w lets the caller, a sender's goroutine, wait for room (see
// waitRoomLocked).
func (c *wsConn) deliverPrepared(p *prepared, w *roomWait) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it := outItem{msg: p.msg}
	if c.state == wsOpen && p.frame != nil && c.cork != nil {
		it.pre = p
	}
	it.bytes = it.payloadSize()
	c.waitRoomLocked(w, it.bytes)
	c.enqueueLocked(it)
}

// senderWait is the longest a sender's goroutine handing a message to
// connections in its own process waits, per send, for room in their
// outbound queues.
const senderWait = 100 * time.Millisecond

// roomWait is one send's allowance for waiting for room (senderWait from
// the first wait), shared by the connections a group message goes to.
type roomWait struct{ until time.Time }

// deadline returns the end of the allowance, which starts at the first
// call.
func (w *roomWait) deadline() time.Time {
	if w.until.IsZero() {
		w.until = time.Now().Add(senderWait)
	}
	return w.until
}

// waitRoomLocked holds back a sender that hands its message over in its
// own goroutine (a consumer in the same process as the gateway) while the
// outbound queue is full and its writer is at work, until the writer has
// taken frames or w's allowance has passed. A burst produced faster than
// the writer gets the CPU is then absorbed the way a channel layer's queue
// absorbed it, instead of closing a client that reads; a client that does
// not read still has a full queue at the end, and is closed as too slow.
// The receive loop never waits (nil w). c.mu is held, and released while
// waiting.
func (c *wsConn) waitRoomLocked(w *roomWait, size int64) {
	if w == nil {
		return
	}
	for c.fullLocked(size) && c.writing && c.state == wsOpen && !c.closing {
		d := time.Until(w.deadline())
		if d <= 0 {
			return
		}
		if c.room == nil {
			c.room = make(chan struct{})
		}
		room := c.room
		c.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-room:
		case <-t.C:
		}
		t.Stop()
		c.mu.Lock()
	}
}

// enqueueLocked queues a reply under the slow-client policy; it.bytes is
// its payloadSize, worked out here when zero. c.mu is held.
func (c *wsConn) enqueueLocked(it outItem) {
	if c.state == wsClosed || c.closing {
		c.s.stats.droppedReplies.Add(1)
		c.s.log.Debug("reply for a closing WebSocket dropped", "channel", c.reply)
		return
	}
	if it.bytes == 0 {
		it.bytes = it.payloadSize()
	}
	if c.fullLocked(it.bytes) {
		c.slow = true
		c.s.stats.slow.Add(1)
		c.s.log.Warn("closing a WebSocket whose client reads too slowly (outbound queue full)", "path", c.path, "client", c.client, "queued", len(c.queue), "queued_bytes", c.queued, "reply_bytes", it.bytes)
		clear(c.queue)
		c.queue = append(c.queue[:0], outItem{code: int(websocket.StatusPolicyViolation), reason: "client too slow", grace: time.Second})
		c.queued = 0
		c.closing = true
		c.kickLocked()
		return
	}
	c.queue = append(c.queue, it)
	c.queued += it.bytes
	c.kickLocked()
}

// kickLocked makes sure someone processes the queue. c.mu is held.
func (c *wsConn) kickLocked() {
	switch c.state {
	case wsHandshaking:
		select {
		case c.notify <- struct{}{}:
		default:
		}
	case wsOpen:
		if !c.writing && len(c.queue) > 0 {
			c.writing = true
			c.s.wg.Add(1) // the reader is still counted, so the counter is not zero
			go c.drain()
		}
	}
}

// serverClose queues a close decided by the server, after the frames
// already queued; later replies are dropped.
func (c *wsConn) serverClose(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == wsClosed || c.closing {
		return
	}
	c.closing = true
	c.queue = append(c.queue, outItem{code: code, reason: reason})
	c.kickLocked()
}

// shutdown closes an open socket with 1001; handshakes in progress notice
// the server's closing channel themselves.
func (c *wsConn) shutdown() {
	c.mu.Lock()
	open := c.state == wsOpen
	c.mu.Unlock()
	if open {
		c.serverClose(int(websocket.StatusGoingAway), "server shutting down")
	}
}

// abort drops the connection without a closing handshake.
func (c *wsConn) abort() {
	c.mu.Lock()
	nc, in := c.nc, c.in
	c.mu.Unlock()
	if in != nil {
		_ = in.Close() // takes a parked socket out of the parker's set first
	} else if nc != nil {
		_ = nc.Close()
	}
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, start time.Time) {
	path, perr := decodePath(r)
	if perr != "" {
		writeErrorPage(w, http.StatusBadRequest, string(perr))
		return
	}
	if code, why := checkHandshake(w, r); code != 0 {
		writeErrorPage(w, code, why)
		return
	}
	ri := s.info(r, path)
	details := ActionDetails{Path: path, Client: ri.clientS}
	if ok, why := s.cfg.origins.allowed(r, ri.scheme); !ok {
		s.stats.originRejected.Add(1)
		s.log.Warn("WebSocket refused: origin not allowed", "origin", r.Header.Get("Origin"), "host", r.Host, "path", path, "client", ri.clientS, "reason", why)
		writeErrorPage(w, http.StatusForbidden, "Origin not allowed.")
		s.accessLog("websocket", "rejected", "WSREJECT "+path, details, 0, 0)
		return
	}
	ctx := context.Background()
	reply, err := s.Layer.NewChannel(ctx, s.wsPfx)
	if err != nil {
		s.log.Error("creating a reply channel failed", "error", err)
		writeErrorPage(w, http.StatusServiceUnavailable, "Channel layer unavailable.")
		return
	}
	c := &wsConn{s: s, reply: reply, path: path, client: ri.clientS, replyV: reply, pathV: path, notify: make(chan struct{}, 1)}
	scheme := "ws"
	if ri.scheme == "https" {
		scheme = "wss"
	}
	s.reg.add(reply, c)
	s.stats.wsHandshaking.Add(1)
	err = owned.Send(ctx, s.Layer, "websocket.connect", channels.Content{
		"reply_channel": reply,
		"scheme":        scheme,
		"path":          path,
		"query_string":  boxedBytes(ri.query),
		"root_path":     ri.rootPath,
		"headers":       ri.headers,
		"client":        orNull(ri.client),
		"server":        orNull(ri.server),
		"order":         int64(0),
	})
	if err != nil {
		s.reg.remove(reply)
		s.stats.wsHandshaking.Add(-1)
		if errors.Is(err, channels.ErrChannelFull) {
			s.stats.connectFull.Add(1)
			s.log.Warn("WebSocket refused: websocket.connect is full", "path", path)
			writeErrorPage(w, http.StatusServiceUnavailable, "Connection queue at capacity")
		} else if errors.Is(err, channels.ErrMessageTooLarge) {
			s.stats.tooLarge.Add(1)
			s.log.Warn("WebSocket refused: websocket.connect too large for the channel layer (headers?)", "path", path, "error", err)
			writeErrorPage(w, http.StatusRequestEntityTooLarge, "Request too large.")
		} else {
			s.log.Error("sending websocket.connect failed", "error", err)
			writeErrorPage(w, http.StatusServiceUnavailable, "Channel layer unavailable.")
		}
		s.accessLog("websocket", "rejected", "WSREJECT "+path, details, 0, 0)
		return
	}
	s.accessLog("websocket", "connecting", "WSCONNECTING "+path, details, 0, 0)
	c.handshake(w, r, start, s.chooseSubprotocol(r))
}

// handshake holds the handshake until the application answers, the connect
// timeout expires, the client leaves or the server shuts down.
func (c *wsConn) handshake(w http.ResponseWriter, r *http.Request, start time.Time, subprotocol string) {
	s := c.s
	var timeout <-chan time.Time
	if s.cfg.connectTimeout > 0 {
		t := time.NewTimer(time.Until(start.Add(s.cfg.connectTimeout)))
		defer t.Stop()
		timeout = t.C
	}
	for {
		for {
			c.mu.Lock()
			if len(c.queue) == 0 {
				c.mu.Unlock()
				break
			}
			it := c.queue[0]
			c.queue[0] = outItem{}
			c.queue = c.queue[1:]
			c.queued -= it.bytes
			c.mu.Unlock()
			if it.msg == nil { // the server gave up on this socket (queue overflow)
				c.reject(w, http.StatusForbidden, "Access denied", false)
				return
			}
			a, bad := parseReply(it.msg)
			switch {
			case bad != "":
				s.stats.invalidReplies.Add(1)
				s.log.Error("invalid WebSocket reply ignored", "path", c.path, "error", bad)
			case a.accept || a.frame != nil:
				c.accept(w, r, subprotocol, it.msg)
				return
			case a.close || a.refuse:
				c.reject(w, http.StatusForbidden, "Access denied", true)
				return
			default:
				s.log.Debug("empty WebSocket reply during the handshake ignored", "path", c.path)
			}
		}
		select {
		case <-c.notify:
		case <-timeout:
			s.log.Info("WebSocket handshake timed out waiting for the application's answer to websocket.connect", "path", c.path, "timeout", s.cfg.connectTimeout)
			c.reject(w, http.StatusForbidden, "Access denied", true)
			return
		case <-r.Context().Done():
			c.mu.Lock()
			c.state = wsClosed
			c.mu.Unlock()
			s.reg.remove(c.reply)
			s.stats.wsHandshaking.Add(-1)
			c.disconnectRejected()
			s.accessLog("websocket", "disconnected", "WSDISCONNECT "+c.path, ActionDetails{Path: c.path, Client: c.client}, 0, 0)
			return
		case <-s.closing:
			c.reject(w, http.StatusServiceUnavailable, "Server shutting down.", false)
			return
		}
	}
}

// reject fails the handshake with an HTTP error and tells the application
// with websocket.disconnect (code 1006, order 1).
func (c *wsConn) reject(w http.ResponseWriter, code int, detail string, byApp bool) {
	s := c.s
	c.mu.Lock()
	c.state = wsClosed
	c.queue = nil
	c.queued = 0
	c.mu.Unlock()
	s.reg.remove(c.reply)
	s.stats.wsHandshaking.Add(-1)
	if byApp {
		s.stats.wsRejected.Add(1)
	}
	writeErrorPage(w, code, detail)
	s.accessLog("websocket", "rejected", "WSREJECT "+c.path, ActionDetails{Path: c.path, Client: c.client}, 0, 0)
	c.disconnectRejected()
}

func (c *wsConn) disconnectRejected() {
	c.s.sendDisconnect("websocket.disconnect", channels.Content{
		"reply_channel": c.reply, "code": int64(websocket.StatusAbnormalClosure), "path": c.path, "order": int64(1),
	})
}

// accept completes the handshake; first is the message that accepted it,
// whose frame and close (if any) go out before anything queued after it.
func (c *wsConn) accept(w http.ResponseWriter, r *http.Request, subprotocol string, first channels.Content) {
	s := c.s
	if subprotocol != "" {
		w.Header().Set("Sec-WebSocket-Protocol", subprotocol)
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{}) // the http.Server's deadlines must not outlive the handshake
	_ = rc.SetWriteDeadline(time.Time{})
	hw := &hijackCapture{ResponseWriter: w, writeTimeout: s.cfg.stallTimeout, onStall: c.stalled}
	ws, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		OnPongReceived:     func(_ context.Context, p []byte) { c.pongReceived(p) },
		InsecureSkipVerify: true, // the origin was checked before websocket.connect
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		s.log.Warn("WebSocket handshake failed", "path", c.path, "error", err)
		c.mu.Lock()
		c.state = wsClosed
		c.mu.Unlock()
		s.reg.remove(c.reply)
		s.stats.wsHandshaking.Add(-1)
		c.disconnectRejected()
		return
	}
	ws.SetReadLimit(s.cfg.maxMessage)
	if hw.in != nil {
		// The library points its buffer at a reader of what net/http had
		// buffered followed by the socket; that was nothing (newIdleReader
		// took it), so read the socket directly and let the two readers go.
		hw.br.Reset(hw.in)
	}
	now := time.Now()
	c.opened = now
	c.lastData.Store(now.UnixNano())
	c.lastPing.Store(now.UnixNano())
	s.stats.wsHandshaking.Add(-1)
	s.stats.wsOpen.Add(1)
	s.stats.wsAccepted.Add(1)
	s.accessLog("websocket", "connected", "WSCONNECT "+c.path, ActionDetails{Path: c.path, Client: c.client}, 0, 0)

	c.mu.Lock()
	c.ws, c.nc, c.cork = ws, hw.conn, hw.cork
	c.in, c.br = hw.in, hw.br
	c.state = wsOpen
	c.notify = nil
	if a, _ := parseReply(first); a.frame != nil || a.close {
		it := outItem{msg: first}
		it.bytes = it.payloadSize()
		c.queue = slices.Insert(c.queue, 0, it)
		c.queued += it.bytes
	}
	c.s.wg.Add(1)
	go c.readLoop(false)
	c.kickLocked()
	c.rearmLocked(now)
	c.mu.Unlock()
	select {
	case <-s.closed:
		c.abort()
		return
	default:
	}
	select {
	case <-s.closing:
		c.shutdown()
	default:
	}
}

// readLoop turns incoming frames into websocket.receive messages until the
// connection ends, then sends websocket.disconnect.
//
// A read loop whose socket is idle parks (see parker): it ends, and a new
// one, with resumed set, starts when the socket is readable again. The
// connection's count in the server's wait group stays with it meanwhile.
func (c *wsConn) readLoop(resumed bool) {
	var p payload
	hot := false // a frame came: the socket is busy (see awaitHot)
	for {
		if c.in != nil && c.in.shouldWait(c.br) {
			// Wait for the client here, holding no read buffer, with
			// nothing but this small frame below the wait, so that an idle
			// socket's stack can shrink (see idleConn); readOne's frame is
			// on the stack only while a message is read. A busy socket
			// keeps its stack, which its frames' sends (and consumers run
			// here) grew, until it has been quiet for a while (see
			// awaitHot). A new socket waits briefly for a first frame
			// (openWait), then parks; so does a busy one once quiet.
			switch {
			case hot:
				if hot = awaitPadded(c.in, time.Unix(0, c.lastData.Load())); !hot {
					continue // quiet for hotWait: wait as an idle socket
				}
			case resumed:
				// Woken because the socket is readable (or closed):
				// read what came.
				c.in.await()
			case !c.waited:
				c.waited = true
				// awaitHot as if the last frame had come hotWait
				// before openWait from now.
				if !c.in.awaitHot(time.Now().Add(openWait - hotWait)) {
					if parking.park(c) {
						return
					}
					c.in.await()
				}
			default:
				if parking.park(c) {
					return
				}
				c.in.await()
			}
			resumed = false
			if !c.in.takeControl(c) {
				continue // only pings and pongs came: wait again
			}
		}
		if code, ended := c.readOne(&p); ended {
			c.finish(code)
			c.s.wg.Done()
			return
		}
		hot = true
	}
}

// openWait is how long the read loop of a new socket waits for a first
// frame before it parks (see parker): a connection that closes at once, or
// sends at once, costs no parking.
const openWait = 50 * time.Millisecond

// hotPad is the size of the frame below a busy socket's wait (see
// awaitHot): the garbage collector keeps a parked goroutine's stack while
// it uses a quarter of it, so stacks up to about four times this size stay.
const hotPad = 3 << 10

// awaitPadded is in.awaitHot with hotPad bytes of frame below the wait.
//
//go:noinline
func awaitPadded(in *idleConn, last time.Time) bool {
	var pad [hotPad]byte
	ok := in.awaitHot(last)
	keepPad(&pad)
	return ok
}

//go:noinline
func keepPad(*[hotPad]byte) {}

// readOne reads one message and sends it as websocket.receive. When the
// connection has ended it returns the websocket.disconnect code.
func (c *wsConn) readOne(p *payload) (code int, ended bool) {
	s := c.s
	typ, rd, err := c.ws.Reader(context.Background())
	if err != nil {
		return c.endCode(err), true
	}
	if err := p.readFrom(rd); err != nil {
		p.release()
		return c.endCode(err), true
	}
	c.lastData.Store(time.Now().UnixNano())
	s.stats.framesIn.Add(1)
	if c.muted.Load() {
		p.release()
		return 0, false
	}
	msg := channels.Content{"reply_channel": c.replyV, "path": c.pathV, "order": c.order + 1}
	if typ == websocket.MessageText {
		text, ok := p.text()
		if !ok {
			p.release()
			s.log.Info("closing a WebSocket that sent invalid UTF-8 text", "path", c.path)
			c.serverClose(int(websocket.StatusInvalidFramePayloadData), "invalid UTF-8")
			return 0, false
		}
		msg["text"] = text
	} else {
		msg["bytes"] = p.bytes() // a copy: the message is handed over, the chunks go back to the pool
	}
	p.release()
	c.sending.Store(true)
	err = s.receiveQ.send(msg)
	c.sending.Store(false)
	switch {
	case err == nil:
		c.order++
	case errors.Is(err, channels.ErrChannelFull):
		s.stats.receiveFull.Add(1)
		s.log.Warn("websocket.receive is full: closing the socket with 1013 and muting it", "path", c.path, "client", c.client)
		c.muted.Store(true)
		c.serverClose(int(websocket.StatusTryAgainLater), "try again later")
	case errors.Is(err, channels.ErrMessageTooLarge):
		s.stats.tooLarge.Add(1)
		s.log.Warn("WebSocket message too large for the channel layer: closing with 1009", "path", c.path, "error", err)
		c.serverClose(int(websocket.StatusMessageTooBig), "message too big")
	default:
		s.log.Error("sending websocket.receive failed: closing with 1011", "path", c.path, "error", err)
		c.serverClose(int(websocket.StatusInternalError), "")
	}
	return 0, false
}

// endCode is the websocket.disconnect code for a connection whose reader
// stopped with err: the peer's close code when a close frame arrived (1005
// when it carried none), else the code the server closed with, else 1006.
func (c *wsConn) endCode(err error) int {
	if code := websocket.CloseStatus(err); code != -1 {
		return int(code)
	}
	if errors.Is(err, websocket.ErrMessageTooBig) {
		c.s.stats.tooLarge.Add(1)
		c.mu.Lock()
		c.sentCode = int(websocket.StatusMessageTooBig)
		c.mu.Unlock()
		return int(websocket.StatusMessageTooBig)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sentCode != 0 {
		return c.sentCode
	}
	return int(websocket.StatusAbnormalClosure)
}

func (c *wsConn) finish(code int) {
	s := c.s
	c.mu.Lock()
	c.state = wsClosed
	clear(c.queue)
	c.queue = nil
	c.queued = 0
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	s.reg.remove(c.reply)
	c.wakePing() // a ping waiting for its pong ends with the connection
	if c.in != nil {
		_ = c.in.Close()
	} else {
		_ = c.nc.Close()
	}
	_ = c.ws.CloseNow()
	s.stats.wsOpen.Add(-1)
	if !c.muted.Load() {
		s.sendDisconnect("websocket.disconnect", channels.Content{
			"reply_channel": c.reply, "code": int64(code), "path": c.path, "order": c.order + 1,
		})
	}
	s.accessLog("websocket", "disconnected", "WSDISCONNECT "+c.path, ActionDetails{Path: c.path, Client: c.client}, 0, 0)
}

// drain writes the queued replies; it exits when the queue is empty.
func (c *wsConn) drain() {
	defer c.s.wg.Done()
	var small [4]outItem // a batch of a few frames needs no allocation
	batch := small[:0]
	for {
		c.mu.Lock()
		if c.state != wsOpen || len(c.queue) == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		n := min(len(c.queue), maxWriteBatch)
		batch = append(batch[:0], c.queue[:n]...)
		for _, it := range batch {
			c.queued -= it.bytes
		}
		if c.room != nil {
			close(c.room) // senders waiting for room (see waitRoomLocked)
			c.room = nil
		}
		clear(c.queue[:n])
		switch {
		case n < len(c.queue):
			c.queue = c.queue[n:]
		case cap(c.queue) <= keepQueueCap:
			c.queue = c.queue[:0] // reused by the next reply
		default:
			c.queue = nil // let the backing array go while the socket idles
		}
		c.mu.Unlock()
		// Several frames waiting: collect them and write them with one
		// system call (see corkWriter).
		corked := len(batch) > 1 && c.cork != nil
		if corked {
			c.cork.cork()
		}
		for _, it := range batch {
			if it.msg == nil {
				if corked && !c.flushCork() {
					break
				}
				var t *time.Timer
				if it.grace > 0 {
					t = time.AfterFunc(it.grace, c.abort)
				}
				c.closeWith(it.code, it.reason)
				if t != nil {
					t.Stop()
				}
				break // nothing is written after a close
			}
			if it.pre != nil {
				c.writePrepared(it.pre)
				continue // a plain frame does not close the socket
			}
			c.writeReply(it.msg, corked)
			if c.isClosing() {
				break // the reply closed the socket
			}
		}
		clear(batch)
		if corked {
			if err := c.cork.uncork(); err != nil {
				c.writeFailed(err)
			}
		}
	}
}

func (c *wsConn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// keepQueueCap is the largest outbound queue array an idle socket keeps.
const keepQueueCap = 2

// maxWriteBatch is the most queued frames written with one system call.
const maxWriteBatch = 64

// flushCork writes the frames collected so far and uncorks the socket, so
// that a closing handshake that follows is written at once; it reports false
// (and drops the connection) if the client does not take them.
func (c *wsConn) flushCork() bool {
	if err := c.cork.uncork(); err != nil {
		c.writeFailed(err)
		return false
	}
	return true
}

// writeFailed drops a connection whose corked batch could not be written:
// the client took nothing for the stall limit (see stalled), or the socket
// broke.
func (c *wsConn) writeFailed(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.stalled()
	}
	c.abort()
}

// stalled marks a connection whose client took no bytes for
// SlowClientTimeout (or WriteTimeout) while frames waited: it is closed as
// a slow client, with code 1008 in its websocket.disconnect (the close
// frame cannot reach a client that does not read), and counted once. The
// corkWriter calls it before the failed write returns, so that the reader
// finds the code when the library closes the connection.
func (c *wsConn) stalled() {
	c.mu.Lock()
	first := !c.slow
	c.slow = true
	c.closing = true
	if c.sentCode == 0 {
		c.sentCode = int(websocket.StatusPolicyViolation)
	}
	c.mu.Unlock()
	if first {
		c.s.stats.slow.Add(1)
		c.s.log.Warn("closing a WebSocket whose client stopped reading (took no bytes while frames waited)", "path", c.path, "client", c.client, "limit", c.s.cfg.stallTimeout)
	}
}

// writeReply applies one reply message to an open socket (§4.4 of the
// message spec: accept is ignored, then the frame, then the close).
//
// With corked set the frame joins the corked batch: it is written without a
// per-frame timeout (the socket's write deadline covers the batch), and the
// batch is flushed before a close.
func (c *wsConn) writeReply(m channels.Content, corked bool) {
	s := c.s
	a, bad := parseReply(m)
	if bad != "" {
		s.stats.invalidReplies.Add(1)
		s.log.Error("invalid WebSocket reply ignored", "path", c.path, "error", bad)
		return
	}
	if a.frame != nil {
		if c.cork != nil {
			// Written past the library, header and payload at once; the
			// socket's write deadline bounds the write (see corkWriter).
			if err := c.cork.writeData(a.binary, a.frame); err != nil {
				if !errors.Is(err, errCloseSent) {
					c.writeFailed(err)
				}
				return
			}
			s.stats.framesOut.Add(1)
			c.lastData.Store(time.Now().UnixNano())
		} else if err := c.writeFrameLibrary(a); err != nil {
			return
		}
	}
	if a.close {
		if !validAppCloseCode(a.code) {
			s.stats.invalidReplies.Add(1)
			s.log.Error("invalid WebSocket close code; nothing sent (use 1000, 1001, 1003, 1007, 1008, 1011 or 3000-4999)", "path", c.path, "code", a.code)
			return
		}
		c.mu.Lock()
		c.closing = true
		clear(c.queue)
		c.queue = nil
		c.queued = 0
		c.mu.Unlock()
		if corked && !c.flushCork() {
			return
		}
		c.closeWith(a.code, "")
	}
}

// writeFrameLibrary writes a's frame through the WebSocket library, bounded
// by the write timeout, for a connection without a corkWriter.
func (c *wsConn) writeFrameLibrary(a reply) error {
	s := c.s
	typ := websocket.MessageText
	if a.binary {
		typ = websocket.MessageBinary
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if s.cfg.writeTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, s.cfg.writeTimeout)
	}
	err := c.ws.Write(ctx, typ, a.frame)
	timedOut := ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)
	cancel()
	if err != nil {
		if timedOut {
			c.stalled()
			c.abort()
		}
		return err
	}
	s.stats.framesOut.Add(1)
	c.lastData.Store(time.Now().UnixNano())
	return nil
}

// writePrepared writes a group message's prepared frame (see prepared).
func (c *wsConn) writePrepared(p *prepared) {
	if err := c.cork.writeFrame(p.frame); err != nil {
		if !errors.Is(err, errCloseSent) {
			c.writeFailed(err)
		}
		return
	}
	c.s.stats.framesOut.Add(1)
	c.lastData.Store(time.Now().UnixNano())
}

// closeWith runs the closing handshake; it returns once the peer has
// answered or the handshake has timed out (5 s to write, 5 s to wait).
func (c *wsConn) closeWith(code int, reason string) {
	select {
	case <-c.s.closed: // Close drops sockets without a closing handshake
		c.abort()
		return
	default:
	}
	c.mu.Lock()
	c.closing = true
	if c.sentCode == 0 {
		c.sentCode = code
	}
	c.mu.Unlock()
	if c.in != nil {
		c.in.closeStarts()
	}
	_ = c.ws.Close(websocket.StatusCode(code), reason)
}

func validAppCloseCode(code int) bool {
	switch code {
	case 1000, 1001, 1003, 1007, 1008, 1011:
		return true
	}
	return code >= 3000 && code <= 4999
}

// rearmLocked schedules the next tick: the earliest of the next ping, the
// idle limit and the lifetime. c.mu is held.
func (c *wsConn) rearmLocked(now time.Time) {
	cfg := &c.s.cfg
	var next time.Time
	earliest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	lastData := time.Unix(0, c.lastData.Load())
	if cfg.wsTimeout > 0 {
		earliest(c.opened.Add(cfg.wsTimeout))
	}
	if cfg.idleTimeout > 0 {
		earliest(lastData.Add(cfg.idleTimeout))
	}
	if cfg.pingInterval > 0 {
		quiet := lastData
		if lp := time.Unix(0, c.lastPing.Load()); lp.After(quiet) {
			quiet = lp
		}
		earliest(quiet.Add(cfg.pingInterval))
	}
	if next.IsZero() {
		return
	}
	d := max(next.Sub(now), time.Millisecond)
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.tick)
	} else {
		c.timer.Reset(d)
	}
}

// tick runs on the connection's timer: lifetime, idle limit, keepalive.
func (c *wsConn) tick() {
	s := c.s
	c.mu.Lock()
	if c.state != wsOpen || c.closing {
		c.mu.Unlock()
		return
	}
	s.wg.Add(1) // the reader is still counted, so the counter is not zero
	c.mu.Unlock()
	defer s.wg.Done()
	cfg := &s.cfg
	now := time.Now()
	lastData := time.Unix(0, c.lastData.Load())
	if cfg.wsTimeout > 0 && !now.Before(c.opened.Add(cfg.wsTimeout)) {
		s.log.Debug("closing a WebSocket that reached its maximum lifetime", "path", c.path, "lifetime", cfg.wsTimeout)
		c.serverClose(int(websocket.StatusNormalClosure), "connection lifetime reached")
		return
	}
	if cfg.idleTimeout > 0 && !now.Before(lastData.Add(cfg.idleTimeout)) {
		s.log.Debug("closing an idle WebSocket", "path", c.path, "idle", cfg.idleTimeout)
		c.serverClose(int(websocket.StatusNormalClosure), "idle timeout")
		return
	}
	if cfg.pingInterval > 0 {
		quiet := lastData
		if lp := time.Unix(0, c.lastPing.Load()); lp.After(quiet) {
			quiet = lp
		}
		if !now.Before(quiet.Add(cfg.pingInterval)) {
			c.lastPing.Store(now.UnixNano())
			// While a frame's consumer runs in the read loop no pong
			// would be read: no ping now, the next one an interval later.
			if !c.sending.Load() && !c.ping(cfg.pingTimeout) {
				return
			}
		}
	}
	c.mu.Lock()
	if c.state == wsOpen && !c.closing {
		c.rearmLocked(time.Now())
	}
	c.mu.Unlock()
}

// ping pings the client and waits at most timeout for the pong; it drops
// the connection when none came, and reports whether the connection is
// still usable.
//
// The gateway writes the ping and matches the pong itself, so that a pong
// can be read before the library (see idleConn.takeControl) and an idle
// socket's read loop need not wait inside the library's frame reader; a
// pong the library reads (between the frames of a fragmented message)
// comes through its OnPongReceived hook.
func (c *wsConn) ping(timeout time.Duration) bool {
	payload := strconv.AppendUint(nil, c.pingSeq.Add(1), 10)
	pong := make(chan struct{}, 1)
	c.pingMu.Lock()
	c.pingWant, c.pingDone = string(payload), pong
	c.pingMu.Unlock()
	defer func() {
		c.pingMu.Lock()
		c.pingWant, c.pingDone = "", nil
		c.pingMu.Unlock()
	}()
	if c.ended() {
		return false
	}
	if err := c.cork.writeFrame(controlFrame(0x89, payload)); err != nil {
		return false // closing, or the write failed (the write's own rules apply)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-pong:
		if c.ended() {
			return false // woken by the end of the connection (see finish)
		}
	case <-t.C:
		if c.ended() {
			return false
		}
		c.s.stats.pingTimeout.Add(1)
		c.s.log.Info("dropping a WebSocket whose ping got no pong", "path", c.path, "client", c.client, "timeout", timeout)
		c.abort()
		return false
	}
	c.lastPing.Store(time.Now().UnixNano())
	return true
}

// ended reports whether the connection has ended (see finish).
func (c *wsConn) ended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == wsClosed
}

// wakePing wakes a ping waiting for its pong.
func (c *wsConn) wakePing() {
	c.pingMu.Lock()
	c.wakePingLocked()
	c.pingMu.Unlock()
}

func (c *wsConn) wakePingLocked() {
	if c.pingDone != nil {
		select {
		case c.pingDone <- struct{}{}:
		default:
		}
	}
}

// pongReceived is called with the payload of every pong the client sends.
func (c *wsConn) pongReceived(payload []byte) {
	c.pingMu.Lock()
	if string(payload) == c.pingWant {
		c.wakePingLocked()
	}
	c.pingMu.Unlock()
}

// pingReceived answers a ping the client sent, read before the library
// (see idleConn.takeControl).
func (c *wsConn) pingReceived(payload []byte) {
	_ = c.cork.writeFrame(controlFrame(0x8A, payload))
}

// controlFrame is a server's (unmasked) control frame: opcode byte (FIN
// set) and a payload of at most 125 bytes.
func controlFrame(op byte, payload []byte) []byte {
	return append([]byte{op, byte(len(payload))}, payload...)
}

// reply is a parsed websocket.send message.
type reply struct {
	accept bool   // accept: true
	refuse bool   // accept: false
	frame  []byte // non-empty text or bytes
	binary bool
	close  bool
	code   int
}

// parseReply checks a websocket.send message; bad says why it must be
// ignored.
func parseReply(m channels.Content) (a reply, bad string) {
	text, hasText := m["text"]
	bin, hasBin := m["bytes"]
	acc, hasAcc := m["accept"]
	cl, hasClose := m["close"]
	known := 0
	for _, has := range [...]bool{hasText, hasBin, hasAcc, hasClose} {
		if has {
			known++
		}
	}
	if len(m) > known { // only then can there be another key
		for k := range m {
			switch {
			case k == "bytes", k == "text", k == "close", k == "accept":
			case strings.HasPrefix(k, "__"):
				// Framework metadata such as the delay server's
				// "__delay_id__" or the worker's "__retries__": not for
				// the client, and no reason to drop the frame.
			default:
				return a, fmt.Sprintf("unknown key %q (want bytes, text, close, accept)", k)
			}
		}
	}
	if text != nil && bin != nil {
		return a, "both text and bytes"
	}
	switch v := text.(type) {
	case nil:
	case string:
		if v != "" {
			// The string's own bytes, not a copy: a frame's payload is only
			// ever read (copied into a write buffer or a prepared frame, or
			// written unmasked by the library).
			a.frame = unsafe.Slice(unsafe.StringData(v), len(v))
		}
	default:
		return a, fmt.Sprintf("text is %T, not text", text)
	}
	switch v := bin.(type) {
	case nil:
	case []byte:
		if len(v) > 0 {
			a.frame, a.binary = v, true
		}
	default:
		return a, fmt.Sprintf("bytes is %T, not bytes", bin)
	}
	switch v := acc.(type) {
	case nil:
	case bool:
		a.accept, a.refuse = v, !v
	default:
		return a, fmt.Sprintf("accept is %T, not a boolean", v)
	}
	switch v := cl.(type) {
	case nil:
	case bool:
		if v {
			a.close, a.code = true, 1000
		}
	default:
		n, ok := m.Int("close")
		if !ok {
			return a, fmt.Sprintf("close is %T, not a boolean or an integer", v)
		}
		if n != 0 {
			a.close, a.code = true, int(n)
		}
	}
	return a, ""
}

// checkHandshake validates an upgrade request before the application hears
// of it; a non-zero code is the HTTP error to answer with.
func checkHandshake(w http.ResponseWriter, r *http.Request) (int, string) {
	if r.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, "WebSocket handshakes use GET."
	}
	if !r.ProtoAtLeast(1, 1) || r.ProtoMajor != 1 || !headerHasToken(r.Header, "Connection", "upgrade") {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		return http.StatusUpgradeRequired, "WebSocket handshakes need HTTP/1.1 with Connection: Upgrade."
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return http.StatusBadRequest, "Unsupported WebSocket version (only 13 is supported)."
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return http.StatusBadRequest, "Missing or repeated Sec-WebSocket-Key."
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return http.StatusBadRequest, "Invalid Sec-WebSocket-Key."
	}
	return 0, ""
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// chooseSubprotocol returns the first subprotocol the client offers that
// the server accepts, or "".
func (s *Server) chooseSubprotocol(r *http.Request) string {
	if len(s.Subprotocols) == 0 {
		return ""
	}
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		if d, err := url.PathUnescape(v); err == nil {
			v = d
		}
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" && slices.Contains(s.Subprotocols, p) {
				return p
			}
		}
	}
	return ""
}

// hijackCapture remembers the connection the WebSocket library hijacks, so
// that the server can drop it without a closing handshake.
type hijackCapture struct {
	http.ResponseWriter
	writeTimeout time.Duration // no progress for this long fails a write
	onStall      func()        // called when it does
	conn         net.Conn
	cork         *corkWriter
	in           *idleConn     // what the library reads, on a plain TCP socket (else nil)
	br           *bufio.Reader // the library's buffer over in
}

// Hijack hands the connection to the WebSocket library with buffers smaller
// than net/http's 4 KiB ones: an idle socket keeps both for its lifetime,
// and larger reads and writes bypass them anyway.
func (h *hijackCapture) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return conn, brw, err
	}
	if f, ok := conn.(*framingConn); ok {
		// No HTTP request follows on a WebSocket: its framing check is
		// over, and the socket need not keep it, nor the raw-call wrapper
		// under it (the socket's paths below make raw calls themselves).
		conn = f.NetConn()
	}
	h.conn = conn
	if tc := tcpConn(conn); tc != nil {
		// Bytes the client has not taken wait in our queue, where their
		// age is seen, not in megabytes of kernel buffer.
		_ = tc.SetWriteBuffer(wsSendBuffer)
	}
	raw := plainSocket(conn)
	h.cork = &corkWriter{conn: conn, raw: raw, timeout: h.writeTimeout, onStall: h.onStall}
	if in, br := newIdleReader(conn, raw, brw.Reader); in != nil {
		h.in, h.br = in, br
		return in, bufio.NewReadWriter(br, bufio.NewWriterSize(h.cork, writeBufferSize)), nil
	}
	r := brw.Reader
	if r.Buffered() == 0 {
		r = bufio.NewReaderSize(conn, socketBufferSize)
	}
	return conn, bufio.NewReadWriter(r, bufio.NewWriterSize(h.cork, writeBufferSize)), nil
}

// socketBufferSize is the size of an open WebSocket's read buffer when
// the socket cannot be read through idleConn (TLS).
const socketBufferSize = 1024

// writeBufferSize is the size of an open WebSocket's write buffer. Data
// frames go past it (corkWriter.writeData, writeFrame); it holds the
// library's control frames, each whole (a server's control frame is at
// most 2 bytes of header and 125 of payload), which corkWriter.Write relies
// on to recognise a close.
const writeBufferSize = 144

// wsSendBuffer is the kernel send buffer (SO_SNDBUF) asked for an open
// WebSocket's TCP connection; Linux doubles it for its bookkeeping. It
// bounds the bytes that sit unsent in the kernel when a client stops
// reading, and keeps a 100 ms round trip at about 1 MiB/s per socket.
const wsSendBuffer = 64 << 10

// tcpConn finds the TCP connection under c (through TLS and NewListener's
// wrapper), or nil.
func tcpConn(c net.Conn) *net.TCPConn {
	for {
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
}

func (h *hijackCapture) Unwrap() http.ResponseWriter { return h.ResponseWriter }
