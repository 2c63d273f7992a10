package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/internal/encoded"
	"github.com/gochannels/channels/internal/inline"
)

// Defaults for the zero values of Server's fields.
const (
	DefaultHTTPTimeout       = 120 * time.Second
	DefaultConnectTimeout    = 30 * time.Second
	DefaultPingInterval      = 20 * time.Second
	DefaultPingTimeout       = 30 * time.Second
	DefaultWebSocketTimeout  = 86400 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultSlowClientTimeout = 5 * time.Second
	DefaultMaxMessageSize    = 1 << 20
	DefaultMaxBodySize       = 10 << 20
	DefaultOutboundQueue     = 256
	DefaultOutboundBytes     = 16 << 20
)

// InlineBodySize is the largest request body sent inline in the
// "body" key of http.request. The rest of a larger body follows as Request
// Body Chunks of at most this size on the message's "body_channel".
const InlineBodySize = 256 << 10

// ServerName names the server in the footer of its error pages.
const ServerName = "Channels for Go"

// ErrServerClosed is returned by Shutdown when the server has already been
// closed.
var ErrServerClosed = errors.New("gateway: server closed")

// Server is the interface server: an http.Handler that turns HTTP requests
// and WebSocket connections into messages on a channel layer and relays what
// the application sends back on each connection's reply channel.
//
// Set the fields before the first call to ServeHTTP (or ServerID); they
// must not change afterwards. Every field's zero value is a safe default;
// only Layer is required. The server starts its single receive loop on first
// use and runs it until Shutdown or Close. ServeHTTP, Stats, ServerID,
// Shutdown and Close may be called concurrently. A Server must not be
// copied after first use.
type Server struct {
	// Layer carries the messages. Required.
	Layer channels.Layer

	// HTTPTimeout is the longest the server waits, from the start of a
	// request, for the application to finish its response. On expiry the
	// client gets 503 "Worker server failed to respond within time
	// limit."; if a streamed response has already started, the
	// connection is aborted instead. Zero means 120 s; negative disables
	// the limit (a warning is logged).
	HTTPTimeout time.Duration

	// ConnectTimeout is the longest a WebSocket handshake is held open
	// waiting for the application's answer to websocket.connect; on
	// expiry the handshake is rejected with 403. Zero means 30 s;
	// negative disables the limit (a warning is logged).
	ConnectTimeout time.Duration

	// PingInterval is how long an open WebSocket may be silent (no frame
	// or ping either way) before the server pings it. Zero means 20 s;
	// negative disables pings (a warning is logged).
	PingInterval time.Duration

	// PingTimeout is how long a ping may wait for its pong before the
	// connection is dropped (websocket.disconnect code 1006). Zero means
	// 30 s.
	PingTimeout time.Duration

	// IdleTimeout, when positive, closes (code 1000) WebSockets on which
	// no data frame has travelled either way for that long. Pings do not
	// count. Zero means no idle limit.
	IdleTimeout time.Duration

	// WebSocketTimeout is the longest a WebSocket may stay open; then the
	// server closes it with code 1000. Zero means the layer's group expiry
	// when the layer has a GroupExpiry() time.Duration method, else
	// 86 400 s; negative disables the limit (a warning is logged).
	WebSocketTimeout time.Duration

	// WriteTimeout bounds the time one WebSocket frame or one HTTP
	// response chunk may take to reach the client's socket; a client that
	// does not read is dropped. Zero means 10 s; negative disables the
	// limit (a warning is logged).
	WriteTimeout time.Duration

	// SlowClientTimeout is how long a WebSocket's client may take no
	// bytes at all while frames wait for it; then the connection is closed
	// (websocket.disconnect code 1008, policy violation) and counted in
	// Stats.SlowClients. The socket's kernel send buffer is kept small
	// (64 KiB), so the wait starts soon after the client stops reading
	// rather than once megabytes have piled up in buffers. A large
	// frame does not count against it as long as the client keeps taking
	// bytes. Zero means 5 s (or WriteTimeout, if shorter); negative leaves
	// only WriteTimeout (a warning is logged).
	SlowClientTimeout time.Duration

	// Subprotocols lists the WebSocket subprotocols the server accepts.
	// The first subprotocol offered by the client that is in this list is
	// chosen and sent back in Sec-WebSocket-Protocol; with no match the
	// response has no such header.
	Subprotocols []string

	// RootPath is the "root_path" of every request (a mount point such as
	// "/forum"), unless the request carries a Daphne-Root-Path header,
	// which overrides it (%-decoded) and is not passed on.
	RootPath string

	// AllowedOrigins lists the origins allowed to open WebSockets. Empty
	// means only pages served from the request's own scheme and host. See
	// the package documentation for the pattern syntax and the rules.
	AllowedOrigins []string

	// AllowMissingOrigin accepts WebSocket handshakes that carry no Origin
	// header. Browsers always send one, so this only lets in other
	// programs (native apps, command-line clients, other servers); by
	// default such handshakes are refused with 403, as Django Channels'
	// OriginValidator refuses them.
	AllowMissingOrigin bool

	// TrustedProxies lists the networks whose X-Forwarded-For,
	// X-Forwarded-Port and X-Forwarded-Proto headers are believed. Headers
	// from any other peer are ignored. Empty means none.
	TrustedProxies []netip.Prefix

	// MaxMessageSize is the largest incoming WebSocket message; a larger
	// one closes the connection with code 1009. Zero means 1 MiB; negative
	// disables the limit (a warning is logged).
	MaxMessageSize int64

	// MaxBodySize is the largest HTTP request body; a larger one gets 413.
	// Zero means 10 MiB; negative disables the limit (a warning is
	// logged).
	MaxBodySize int64

	// OutboundQueue is how many messages from the application may wait
	// for one connection's client to read them (WebSocket frames, or
	// chunks of a streamed HTTP response). A WebSocket whose queue
	// overflows is closed with code 1008 (policy violation) and counted in
	// Stats.SlowClients; an HTTP response is aborted. Zero means 256;
	// negative disables the limit (a warning is logged).
	OutboundQueue int

	// OutboundBytes bounds the payload bytes waiting for one connection's
	// client (WebSocket frames, or the content of a streamed HTTP
	// response's chunks), as OutboundQueue bounds their number: a reply
	// that would take the queue over it closes the WebSocket the same way
	// (code 1008, Stats.SlowClients), or aborts the response. A reply
	// always goes into an empty queue, however large (the layer's message
	// size limit bounds it). A group message's frame counts for every
	// member it waits for. Zero means 16 MiB; negative disables the limit
	// (a warning is logged).
	OutboundBytes int64

	// Logger receives the server's logs. Nil means slog.Default().
	Logger *slog.Logger

	// AccessLog, when set, receives one NCSA-like line per event (HTTP
	// response finished, WebSocket connecting, connected, rejected,
	// disconnected), each written with a single Write call. Nil means no
	// access log.
	AccessLog io.Writer

	// OnAction, when set, is called for the same events as the access log:
	// protocol "http" with action "complete", or protocol "websocket" with
	// "connecting", "connected", "rejected" or "disconnected". It is
	// called synchronously from connection goroutines, possibly
	// concurrently; it must be fast and safe for concurrent use.
	OnAction func(protocol, action string, details ActionDetails)

	// HTTPHandler, when set, serves plain HTTP requests directly in this
	// process instead of sending them over the layer (a fast path for
	// ordinary handlers). WebSockets always go over the layer.
	HTTPHandler http.Handler

	// WantsHTTPDisconnect, when set, is asked, once the application has
	// completed a request's response, whether the application consumes the
	// http.disconnect {reply_channel, path} that would follow (for example,
	// whether its router routes "http.disconnect" for that path); when it
	// returns false the message is not sent, which saves a layer message
	// and a worker dispatch per request. A request that ends without a
	// complete response from the application (the client went away, a
	// timeout, a slow client, shutdown, a request refused with 503)
	// always gets its http.disconnect. Nil sends one after every request,
	// as Channels 1.0 does (interface server spec §3.8). It may be called
	// concurrently and must be fast.
	WantsHTTPDisconnect func(replyChannel, path string) bool

	initOnce sync.Once
	initErr  error
	id       string
	httpPfx  string
	wsPfx    string
	cfg      config
	log      *slog.Logger

	reg      registry
	loopStop context.CancelFunc
	loopDone chan struct{}

	mu       sync.RWMutex // guards shutting and wg.Add from zero
	shutting bool
	wg       sync.WaitGroup
	closing  chan struct{} // closed by Shutdown: handshakes and new requests are refused
	closed   chan struct{} // closed by Close: everything is aborted
	stopOnce sync.Once
	doneOnce sync.Once

	logMu sync.Mutex // serialises AccessLog writes

	// Messages waiting for room on their full channels.
	receiveQ, wsDisconnectQ, httpDisconnectQ fullQueue

	stats counters
}

// config holds the effective settings after defaults.
type config struct {
	httpTimeout, connectTimeout, pingInterval, pingTimeout time.Duration
	idleTimeout, wsTimeout, writeTimeout                   time.Duration
	stallTimeout                                           time.Duration // WebSocket writes: no progress for this long is a slow client
	maxMessage, maxBody                                    int64
	outbound                                               int
	outboundBytes                                          int64
	origins                                                *originPolicy
	// layerEncodes: the layer encodes what it sends and keeps nothing of
	// it (package encoded), so an http.request's map can be reused.
	layerEncodes bool
}

// outboundFull reports whether a client's outbound queue, holding n
// replies of queued payload bytes, has no room for one of size bytes:
// it holds OutboundQueue replies, or the new one would take it over
// OutboundBytes. An empty queue always has room, so that one reply goes
// out however large.
func (c *config) outboundFull(n int, queued, size int64) bool {
	if n == 0 {
		return false
	}
	return c.outbound > 0 && n >= c.outbound || c.outboundBytes > 0 && queued+size > c.outboundBytes
}

// ActionDetails describes one event reported to Server.OnAction.
type ActionDetails struct {
	// Path is the request's decoded path.
	Path string
	// Client is the client's address as "ip:port", or "" when unknown.
	Client string
	// Method is the HTTP method (HTTP only).
	Method string
	// Status is the HTTP status sent (HTTP only).
	Status int
	// Size is the number of body bytes sent (HTTP only).
	Size int64
	// TimeTaken is the time from the start of the request to the end of
	// the response (HTTP only).
	TimeTaken time.Duration
}

// Stats are a server's figures. Gauges are current values; counters count
// since the server started.
type Stats struct {
	WebSocketsOpen        int64  // WebSockets accepted and not yet closed
	WebSocketsHandshaking int64  // WebSocket handshakes waiting for the application
	WebSocketsParked      int64  // open WebSockets idle with no goroutine of their own (Linux; see the package doc, "Idle sockets")
	HTTPInFlight          int64  // HTTP requests being served
	HTTPRequests          uint64 // HTTP requests received (both paths)
	WebSocketsAccepted    uint64 // handshakes completed
	WebSocketsRejected    uint64 // handshakes rejected by the application or the connect timeout (403)
	OriginRejected        uint64 // handshakes refused because of their Origin (403)
	RequestQueueFull      uint64 // 503s because http.request was full
	ConnectQueueFull      uint64 // 503s because websocket.connect was full
	ReceiveQueueFull      uint64 // sockets closed with 1013 because websocket.receive stayed full
	HTTPTimeouts          uint64 // requests that ran out of HTTPTimeout
	SlowClients           uint64 // connections closed because their outbound queue overflowed, their client took nothing for SlowClientTimeout, or a write timed out
	PingTimeouts          uint64 // WebSockets dropped because a ping got no pong
	TooLarge              uint64 // WebSocket messages over MaxMessageSize (1009) and bodies over MaxBodySize (413)
	InvalidReplies        uint64 // reply messages ignored because they were malformed
	DroppedReplies        uint64 // reply messages for unknown or finished connections
	DroppedDisconnects    uint64 // http.disconnect / websocket.disconnect not sent (channel full for 5 s, or a layer error)
	LayerErrors           uint64 // failed layer calls in the receive loop
	LayerDataLosses       uint64 // times the layer reported that it lost its data (see CloseLayerDataLost)
	DataLossCloses        uint64 // WebSockets closed with CloseLayerDataLost
	FramesIn              uint64 // WebSocket data frames (messages) received from clients
	FramesOut             uint64 // WebSocket data frames (messages) written to clients
}

type counters struct {
	wsOpen, wsHandshaking, wsParked, httpInFlight                          atomic.Int64
	httpRequests, wsAccepted, wsRejected, originRejected                   atomic.Uint64
	requestFull, connectFull, receiveFull, httpTimeouts, slow, pingTimeout atomic.Uint64
	tooLarge, invalidReplies, droppedReplies, droppedDisconnects           atomic.Uint64
	layerErrors, dataLosses, dataLossCloses                                atomic.Uint64
	framesIn, framesOut                                                    atomic.Uint64
}

// Stats returns the server's figures. It never blocks.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		WebSocketsOpen:        c.wsOpen.Load(),
		WebSocketsHandshaking: c.wsHandshaking.Load(),
		WebSocketsParked:      c.wsParked.Load(),
		HTTPInFlight:          c.httpInFlight.Load(),
		HTTPRequests:          c.httpRequests.Load(),
		WebSocketsAccepted:    c.wsAccepted.Load(),
		WebSocketsRejected:    c.wsRejected.Load(),
		OriginRejected:        c.originRejected.Load(),
		RequestQueueFull:      c.requestFull.Load(),
		ConnectQueueFull:      c.connectFull.Load(),
		ReceiveQueueFull:      c.receiveFull.Load(),
		HTTPTimeouts:          c.httpTimeouts.Load(),
		SlowClients:           c.slow.Load(),
		PingTimeouts:          c.pingTimeout.Load(),
		TooLarge:              c.tooLarge.Load(),
		InvalidReplies:        c.invalidReplies.Load(),
		DroppedReplies:        c.droppedReplies.Load(),
		DroppedDisconnects:    c.droppedDisconnects.Load(),
		LayerErrors:           c.layerErrors.Load(),
		FramesIn:              c.framesIn.Load(),
		FramesOut:             c.framesOut.Load(),
		LayerDataLosses:       c.dataLosses.Load(),
		DataLossCloses:        c.dataLossCloses.Load(),
	}
}

// ServerID returns the random 12-character identifier in the server's
// reply channel names ("http.response.<ID>!…", "websocket.send.<ID>!…"),
// starting the server if it has not started yet.
func (s *Server) ServerID() string {
	s.init()
	return s.id
}

// String describes the server for logs: its ID and its layer. Like
// ServerID, it starts the server if it has not started yet.
func (s *Server) String() string {
	s.init()
	return fmt.Sprintf("gateway %s on %v", s.id, s.Layer)
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.Default()
		}
		s.log = s.log.With("component", "gateway")
		s.closing = make(chan struct{})
		s.closed = make(chan struct{})
		s.receiveQ.init(s, "websocket.receive", receiveRetry)
		s.receiveQ.inline, _ = inline.For(s.Layer)
		s.wsDisconnectQ.init(s, "websocket.disconnect", disconnectRetry)
		s.httpDisconnectQ.init(s, "http.disconnect", disconnectRetry)
		s.loopDone = make(chan struct{})
		s.id = inmemory.RandomSuffix(12)
		s.httpPfx = "http.response." + s.id + "!"
		s.wsPfx = "websocket.send." + s.id + "!"
		s.reg.init()
		if s.Layer == nil {
			s.initErr = errors.New("gateway: Server.Layer is nil")
			s.log.Error("no channel layer configured; every request will fail")
			close(s.loopDone)
			return
		}
		s.cfg, s.initErr = s.buildConfig()
		if s.initErr != nil {
			s.log.Error("invalid configuration; every request will fail", "error", s.initErr)
			close(s.loopDone)
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		s.loopStop = cancel
		go s.receiveLoop(ctx)
		s.attachLocal()
		s.watchDataLoss()
	})
}

func (s *Server) buildConfig() (config, error) {
	warn := func(what string) { s.log.Warn(what + " is disabled; clients can hold resources without limit") }
	pick := func(v, def time.Duration, name string) time.Duration {
		switch {
		case v == 0:
			return def
		case v < 0:
			warn(name)
			return 0
		}
		return v
	}
	var c config
	c.httpTimeout = pick(s.HTTPTimeout, DefaultHTTPTimeout, "HTTPTimeout")
	c.connectTimeout = pick(s.ConnectTimeout, DefaultConnectTimeout, "ConnectTimeout")
	c.pingInterval = s.PingInterval
	switch {
	case c.pingInterval == 0:
		c.pingInterval = DefaultPingInterval
	case c.pingInterval < 0:
		s.log.Warn("PingInterval is negative: WebSocket keepalive pings are disabled; dead peers are only noticed by TCP")
		c.pingInterval = 0
	}
	c.pingTimeout = s.PingTimeout
	if c.pingTimeout <= 0 {
		c.pingTimeout = DefaultPingTimeout
	}
	if s.IdleTimeout > 0 {
		c.idleTimeout = s.IdleTimeout
	}
	wsDefault := DefaultWebSocketTimeout
	if ge, ok := s.Layer.(interface{ GroupExpiry() time.Duration }); ok && ge.GroupExpiry() > 0 {
		wsDefault = ge.GroupExpiry()
	}
	c.wsTimeout = pick(s.WebSocketTimeout, wsDefault, "WebSocketTimeout")
	_, c.layerEncodes = encoded.For(s.Layer)
	c.writeTimeout = pick(s.WriteTimeout, DefaultWriteTimeout, "WriteTimeout")
	c.stallTimeout = c.writeTimeout
	switch {
	case s.SlowClientTimeout < 0:
		s.log.Warn("SlowClientTimeout is negative: a WebSocket client that stops reading is noticed only by WriteTimeout", "write_timeout", c.writeTimeout)
	case s.SlowClientTimeout == 0 && (c.stallTimeout <= 0 || DefaultSlowClientTimeout < c.stallTimeout):
		c.stallTimeout = DefaultSlowClientTimeout
	case s.SlowClientTimeout > 0 && (c.stallTimeout <= 0 || s.SlowClientTimeout < c.stallTimeout):
		c.stallTimeout = s.SlowClientTimeout
	}
	pickSize := func(v, def int64, name string) int64 {
		switch {
		case v == 0:
			return def
		case v < 0:
			warn(name)
			return -1
		}
		return v
	}
	c.maxMessage = pickSize(s.MaxMessageSize, DefaultMaxMessageSize, "MaxMessageSize")
	c.maxBody = pickSize(s.MaxBodySize, DefaultMaxBodySize, "MaxBodySize")
	c.outboundBytes = pickSize(s.OutboundBytes, DefaultOutboundBytes, "OutboundBytes")
	c.outbound = s.OutboundQueue
	switch {
	case c.outbound == 0:
		c.outbound = DefaultOutboundQueue
	case c.outbound < 0:
		warn("OutboundQueue")
		c.outbound = -1
	}
	op, err := newOriginPolicy(s.AllowedOrigins)
	if err != nil {
		return c, err
	}
	if op.any {
		s.log.Warn(`AllowedOrigins contains "*": WebSockets may be opened from any web page (cross-site WebSocket hijacking is possible with cookie authentication)`)
	}
	op.missing = s.AllowMissingOrigin
	if op.missing {
		s.log.Warn("AllowMissingOrigin is set: WebSocket handshakes without an Origin header are accepted (fine for non-browser clients; browsers always send one)")
	}
	c.origins = op
	return c, nil
}

// ServeHTTP serves one HTTP request or WebSocket connection. A request whose
// Upgrade header names websocket is a WebSocket handshake; it is held open
// until the application answers websocket.connect. Anything else is an HTTP
// request, sent over the layer as http.request (or given to HTTPHandler).
//
// ServeHTTP blocks until the HTTP response is complete or, for a WebSocket,
// until the handshake is answered; an accepted WebSocket is then served by
// the server's own goroutines until it closes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	start := time.Now()
	if why := badFraming(r); why != "" {
		s.log.Warn("HTTP request refused with 400 and the connection closed: "+why+" (RFC 9112 §6.1)", "method", r.Method, "uri", r.RequestURI, "client", r.RemoteAddr)
		writeErrorPage(w, http.StatusBadRequest, "Request has "+why+".")
		return
	}
	if s.initErr != nil {
		writeErrorPage(w, http.StatusInternalServerError, "HTTP processing error")
		return
	}
	if !s.enter() {
		w.Header().Set("Connection", "close")
		writeErrorPage(w, http.StatusServiceUnavailable, "Server shutting down.")
		return
	}
	defer s.wg.Done()
	if isWebSocket(r) {
		s.serveWebSocket(w, r, start)
		return
	}
	s.serveHTTP(w, r, start)
}

// enter counts a new request or connection, unless the server is shutting
// down.
func (s *Server) enter() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.shutting {
		return false
	}
	s.wg.Add(1)
	return true
}

// Shutdown stops the server gracefully: new requests and handshakes get 503,
// handshakes still waiting for the application are refused with 503, every
// open WebSocket is closed with code 1001 (its websocket.disconnect is sent
// as usual), HTTP requests in progress are allowed to finish, and the
// receive loop stops once nothing is left. It blocks until then, or until
// ctx is done, when it returns ctx's error and leaves the remaining
// connections to Close.
//
// Shutdown does not stop the http.Server that calls ServeHTTP: call its
// Shutdown too (hijacked WebSocket connections are not tracked by it).
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	select {
	case <-s.closed:
		return ErrServerClosed
	default:
	}
	s.beginShutdown()
	for _, e := range s.reg.all() {
		if c, ok := e.(*wsConn); ok {
			c.shutdown()
		}
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := s.settleQueues(ctx); err != nil {
		return err
	}
	s.stopLoop()
	return nil
}

// settleQueues waits until the messages waiting for room on full channels
// (disconnects, mostly) have been sent or given up.
func (s *Server) settleQueues(ctx context.Context) error {
	for _, q := range []*fullQueue{&s.receiveQ, &s.wsDisconnectQ, &s.httpDisconnectQ} {
		if err := q.settled(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the server at once: new requests get 503, HTTP requests in
// progress are answered with 503 or aborted, handshakes are refused, and
// every WebSocket is dropped without a closing handshake (its
// websocket.disconnect, code 1006, is still sent). It waits for the
// server's goroutines to end. Close after Close does nothing.
func (s *Server) Close() error {
	s.init()
	s.doneOnce.Do(func() { close(s.closed) })
	s.beginShutdown()
	for _, e := range s.reg.all() {
		if c, ok := e.(*wsConn); ok {
			c.abort()
		}
	}
	s.wg.Wait()
	_ = s.settleQueues(context.Background()) // the queues give up at once once the server is closed
	s.stopLoop()
	return nil
}

func (s *Server) beginShutdown() {
	s.mu.Lock()
	s.shutting = true
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.closing) })
}

func (s *Server) stopLoop() {
	if s.loopStop != nil {
		s.loopStop()
	}
	<-s.loopDone
}

func (s *Server) limitQueue() int { return s.cfg.outbound }

// sendDisconnect sends an http.disconnect or websocket.disconnect message
// without waiting: a full channel is retried in the background for up to
// disconnectRetry (see fullQueue); what still cannot be sent is dropped,
// logged and counted.
func (s *Server) sendDisconnect(channel string, c channels.Content) {
	q := &s.httpDisconnectQ
	if channel == s.wsDisconnectQ.channel {
		q = &s.wsDisconnectQ
	}
	ctx, cancel := context.WithTimeout(context.Background(), disconnectRetry)
	defer cancel()
	q.sendLater(ctx, c)
}
