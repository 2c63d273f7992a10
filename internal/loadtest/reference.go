package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Defaults of the Reference server's zero fields.
const (
	DefaultQueueSize   = 256
	DefaultSlowTimeout = 5 * time.Second
	DefaultReadLimit   = 1 << 20
	DefaultBufferSize  = 1 << 10
)

// Reference is the ceiling the Channels servers are measured against: the
// load-test protocol (GET /http/, WebSocket /echo/ and /fanout/<room>/)
// served by net/http and coder/websocket alone, with an in-process hub of
// rooms instead of a channel layer and workers.
//
// Each WebSocket has one goroutine reading it, and 1 KiB read and write
// buffers instead of net/http's 4 KiB ones. Echoes are written back by
// that goroutine. A broadcast puts the frame (one shared, immutable slice) on
// every member's bounded send queue, drained by the member's writer
// goroutine; with DirectWrite it writes to every member in turn instead,
// under the connection's write lock. When a queue is full the broadcast waits
// for room, which slows a fast publisher down to its room's pace. A client
// that stops reading is found by a watchdog: any write blocked for longer
// than SlowTimeout closes its connection (and so releases the broadcast).
// Compression is off. (Measured on 2 cores, 500 subscribers × 1000 frames:
// queues with a writer each deliver 3× faster than direct writes, which
// serialise every delivery on the publisher's goroutine.)
//
// Configure the exported fields before the first request; ServeHTTP may then
// be called concurrently. Shutdown closes every WebSocket and must be called
// to release the slow-write watchdog.
type Reference struct {
	// QueueSize is the number of broadcast frames a connection may have
	// waiting to be written (default 256).
	QueueSize int
	// SlowTimeout is how long a single write may block before the
	// connection is closed as too slow (default 5s).
	SlowTimeout time.Duration
	// ReadLimit is the largest frame accepted, in bytes (default 1 MiB).
	ReadLimit int64
	// BufferSize is the size of each connection's read and write buffers
	// (default 1 KiB).
	BufferSize int
	// DirectWrite makes broadcasts write to each member directly instead
	// of through its send queue and writer goroutine.
	DirectWrite bool
	// Logger receives slow-client closures and shutdown; nil means none.
	Logger *slog.Logger

	init    sync.Once
	mux     *http.ServeMux
	stop    chan struct{}
	watchWG sync.WaitGroup

	mu       sync.Mutex
	conns    map[*refConn]struct{}
	rooms    map[string]*room
	shutdown bool
	handlers sync.WaitGroup // read loops and writer goroutines
	closers  sync.WaitGroup // close handshakes in progress

	evicted atomic.Int64
	base    time.Time
}

// ReferenceStats is a snapshot of a Reference server.
type ReferenceStats struct {
	Conns   int   // open WebSockets
	Rooms   int   // rooms with at least one member
	Evicted int64 // connections closed for being too slow
}

// refConn is one server-side WebSocket.
type refConn struct {
	ws       *websocket.Conn
	queue    chan []byte // broadcast frames; nil unless fanout with a writer
	dead     chan struct{}
	deadOnce sync.Once
	// writingSince is when the write in progress started (ns since
	// Reference.base), or 0: how the watchdog finds stuck writes.
	writingSince atomic.Int64
}

func (c *refConn) kill() { c.deadOnce.Do(func() { close(c.dead) }) }

// room is a set of connections. The member list handed to broadcasts is
// rebuilt only after a join or leave, so a broadcast holds the lock for a
// pointer copy, not for the writes.
type room struct {
	mu      sync.Mutex
	members map[*refConn]struct{}
	list    []*refConn // nil after a change
}

func (s *Reference) setup() {
	s.init.Do(func() {
		if s.QueueSize <= 0 {
			s.QueueSize = DefaultQueueSize
		}
		if s.SlowTimeout <= 0 {
			s.SlowTimeout = DefaultSlowTimeout
		}
		if s.BufferSize <= 0 {
			s.BufferSize = DefaultBufferSize
		}
		if s.ReadLimit <= 0 {
			s.ReadLimit = DefaultReadLimit
		}
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		s.base = time.Now()
		s.stop = make(chan struct{})
		s.conns = make(map[*refConn]struct{})
		s.rooms = make(map[string]*room)
		s.mux = http.NewServeMux()
		s.mux.HandleFunc("GET /http/{$}", s.serveHTTP)
		s.mux.HandleFunc("GET /echo/{$}", s.serveEcho)
		s.mux.HandleFunc("GET /fanout/{room}/{$}", s.serveFanout)
		s.watchWG.Go(s.watchdog)
	})
}

// ServeHTTP routes the three endpoints of the load-test protocol.
func (s *Reference) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.setup()
	s.mux.ServeHTTP(w, r)
}

// Stats returns the current counts. Safe for concurrent use.
func (s *Reference) Stats() ReferenceStats {
	s.setup()
	s.mu.Lock()
	defer s.mu.Unlock()
	return ReferenceStats{Conns: len(s.conns), Rooms: len(s.rooms), Evicted: s.evicted.Load()}
}

// Shutdown closes every WebSocket with 1001 (going away), refuses new ones,
// and waits for their handlers to return or ctx to be done, whichever is
// first; then it closes whatever is left without a handshake. It does not
// stop the HTTP server the handler is mounted in.
func (s *Reference) Shutdown(ctx context.Context) error {
	s.setup()
	s.mu.Lock()
	first := !s.shutdown
	s.shutdown = true
	conns := make([]*refConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if first {
		close(s.stop)
	}
	s.watchWG.Wait()

	for _, c := range conns {
		s.closers.Go(func() { c.ws.Close(websocket.StatusGoingAway, "server shutting down") })
	}
	done := make(chan struct{})
	go func() { s.handlers.Wait(); s.closers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.ws.CloseNow()
		}
		<-done
		return ctx.Err()
	}
}

func (s *Reference) serveHTTP(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["Content-Length"] = []string{"2"}
	io.WriteString(w, "ok")
}

// accept upgrades the request and registers the connection; nil when the
// handshake failed or the server is shutting down.
func (s *Reference) accept(w http.ResponseWriter, r *http.Request) *refConn {
	ws, err := websocket.Accept(&smallBuffers{ResponseWriter: w, size: s.BufferSize}, r,
		&websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil // Accept has answered the request
	}
	ws.SetReadLimit(s.ReadLimit)
	c := &refConn{ws: ws, dead: make(chan struct{})}
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		ws.Close(websocket.StatusGoingAway, "server shutting down")
		return nil
	}
	s.conns[c] = struct{}{}
	s.handlers.Add(1)
	s.mu.Unlock()
	return c
}

// smallBuffers hands the hijacked connection to the WebSocket library with
// buffers of the given size instead of net/http's 4 KiB ones: an idle
// socket keeps both for its lifetime, and reads and writes larger than a
// buffer bypass it anyway.
type smallBuffers struct {
	http.ResponseWriter
	size int
}

// Hijack takes over the connection, keeping whatever the client has sent
// beyond the handshake.
func (h *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return conn, brw, err
	}
	r := brw.Reader
	if r.Buffered() == 0 {
		r = bufio.NewReaderSize(conn, h.size)
	}
	return conn, bufio.NewReadWriter(r, bufio.NewWriterSize(conn, h.size)), nil
}

// Unwrap gives http.ResponseController the original writer.
func (h *smallBuffers) Unwrap() http.ResponseWriter { return h.ResponseWriter }

func (s *Reference) release(c *refConn) {
	c.kill()
	c.ws.CloseNow()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.handlers.Done()
}

// write writes one frame, visible to the watchdog while it blocks.
func (s *Reference) write(c *refConn, typ websocket.MessageType, b []byte) error {
	c.writingSince.Store(max(int64(time.Since(s.base)), 1))
	err := c.ws.Write(context.Background(), typ, b)
	c.writingSince.Store(0)
	return err
}

var echoBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// The handlers return as soon as the connection is registered: its read
// loop runs on a fresh goroutine, whose stack starts small, rather than on
// the net/http one, whose stack grew while serving the handshake.

func (s *Reference) serveEcho(w http.ResponseWriter, r *http.Request) {
	if c := s.accept(w, r); c != nil {
		go s.echoLoop(c)
	}
}

func (s *Reference) echoLoop(c *refConn) {
	defer s.release(c)
	for {
		typ, rd, err := c.ws.Reader(context.Background())
		if err != nil {
			return
		}
		// A pooled buffer: an idle connection holds none.
		buf := echoBufs.Get().(*bytes.Buffer)
		buf.Reset()
		_, err = buf.ReadFrom(rd)
		if err == nil {
			err = s.write(c, typ, buf.Bytes())
		}
		echoBufs.Put(buf)
		if err != nil {
			return
		}
	}
}

func (s *Reference) serveFanout(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("room")
	c := s.accept(w, r)
	if c == nil {
		return
	}
	if !s.DirectWrite {
		c.queue = make(chan []byte, s.QueueSize)
		s.handlers.Go(func() { s.writeLoop(c) })
	}
	rm := s.join(name, c)
	go s.fanoutLoop(c, name, rm)
}

func (s *Reference) fanoutLoop(c *refConn, name string, rm *room) {
	defer s.release(c)
	defer s.leave(name, rm, c)
	for {
		// Read allocates the frame; it is shared, read-only, by every
		// member's queue.
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			return
		}
		s.broadcast(rm, b)
	}
}

func (s *Reference) join(name string, c *refConn) *room {
	s.mu.Lock()
	rm := s.rooms[name]
	if rm == nil {
		rm = &room{members: make(map[*refConn]struct{})}
		s.rooms[name] = rm
	}
	rm.mu.Lock()
	rm.members[c] = struct{}{}
	rm.list = nil
	rm.mu.Unlock()
	s.mu.Unlock()
	return rm
}

func (s *Reference) leave(name string, rm *room, c *refConn) {
	s.mu.Lock()
	rm.mu.Lock()
	delete(rm.members, c)
	rm.list = nil
	empty := len(rm.members) == 0
	rm.mu.Unlock()
	if empty && s.rooms[name] == rm {
		delete(s.rooms, name)
	}
	s.mu.Unlock()
}

func (rm *room) snapshot() []*refConn {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.list == nil {
		rm.list = make([]*refConn, 0, len(rm.members))
		for m := range rm.members {
			rm.list = append(rm.list, m)
		}
	}
	return rm.list
}

func (s *Reference) broadcast(rm *room, b []byte) {
	for _, m := range rm.snapshot() {
		if s.DirectWrite {
			if err := s.write(m, websocket.MessageText, b); err != nil {
				m.kill()
			}
			continue
		}
		// A full queue holds the broadcast, and so the publisher, to the
		// member's pace; the watchdog closes the member if its writer stays
		// stuck in one write for SlowTimeout, which releases the wait.
		select {
		case m.queue <- b:
		case <-m.dead:
		}
	}
}

// writeLoop drains a fanout connection's send queue.
func (s *Reference) writeLoop(c *refConn) {
	for {
		select {
		case <-c.dead:
			return
		case b := <-c.queue:
			if err := s.write(c, websocket.MessageText, b); err != nil {
				c.kill()
				c.ws.CloseNow()
				return
			}
		}
	}
}

// evict closes a connection that cannot keep up. Its socket is full, so a
// close frame could not get through either: the TCP connection is dropped.
func (s *Reference) evict(c *refConn, why string) {
	select {
	case <-c.dead:
		return // closing already
	default:
	}
	c.kill()
	s.evicted.Add(1)
	s.Logger.Warn("closing slow client", "reason", why)
	c.ws.CloseNow()
}

// watchdog closes connections whose current write has been blocked for
// longer than SlowTimeout: one goroutine, no timer per write.
func (s *Reference) watchdog() {
	t := time.NewTicker(min(s.SlowTimeout/4, time.Second))
	defer t.Stop()
	var stuck []*refConn
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := int64(time.Since(s.base))
		stuck = stuck[:0]
		s.mu.Lock()
		for c := range s.conns {
			if since := c.writingSince.Load(); since != 0 && now-since > int64(s.SlowTimeout) {
				stuck = append(stuck, c)
			}
		}
		s.mu.Unlock()
		for _, c := range stuck {
			s.evict(c, "a write blocked for longer than SlowTimeout")
		}
	}
}
