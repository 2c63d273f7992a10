package channelstest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/worker"
)

// ServerConfig configures StartServer. Its zero value serves the default
// routes only (accept every WebSocket, 404 for HTTP) on a fresh in-memory
// layer.
type ServerConfig struct {
	// Consumer runs the messages. A *channels.Router is extended with the
	// default routes (channels.WithDefaults); another consumer must list
	// its channels (channels.ChannelConsumer) and is routed on them before
	// the defaults.
	Consumer channels.Consumer
	// Layer carries the messages. Nil means a fresh in-memory layer,
	// closed when the test ends.
	Layer channels.Layer
	// Gateway, when set, adjusts the gateway's configuration before it
	// starts (timeouts, origins, access log, ...).
	Gateway func(*gateway.Server)
	// Worker, when set, adjusts the worker before it starts.
	Worker func(*worker.Worker)
	// NoWorker starts no worker: the test consumes the messages itself
	// (with a Client on Server.Layer, or the layer directly).
	NoWorker bool
}

// Server is a live interface server for tests: a gateway.Server on a real
// local socket (httptest), a worker running your consumers, and the layer
// joining them. Everything stops when the test ends.
type Server struct {
	// URL is the server's base URL, "http://127.0.0.1:<port>".
	URL string
	// Layer is the channel layer between the gateway and the worker.
	Layer channels.Layer
	// Gateway is the interface server.
	Gateway *gateway.Server
	// Worker runs the consumers; nil with ServerConfig.NoWorker.
	Worker *worker.Worker
	// HTTP is the underlying test server; HTTP.Client() talks to it.
	HTTP *httptest.Server

	t TB
}

// NewServer starts a live server running consumer (see ServerConfig) on a
// fresh in-memory layer.
func NewServer(t TB, consumer channels.Consumer) *Server {
	t.Helper()
	return StartServer(t, ServerConfig{Consumer: consumer})
}

// StartServer starts a live server configured by cfg. When the test ends it
// shuts the gateway down (sockets closed with 1001), stops the HTTP server
// and the worker, and closes the layer if it created it, leaving no
// goroutine behind. A gateway that has not stopped 10 s after Close (a
// connection that never ends) fails the test instead of hanging it.
func StartServer(t TB, cfg ServerConfig) *Server {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	l := cfg.Layer
	if l == nil {
		ml := inmemory.MustNew(inmemory.Config{})
		t.Cleanup(func() { ml.Close() })
		l = ml
	}
	s := &Server{Layer: l, t: t}
	s.Gateway = &gateway.Server{Layer: l, Logger: logger}
	if cfg.Gateway != nil {
		cfg.Gateway(s.Gateway)
	}
	var stopWorker func()
	if !cfg.NoWorker {
		s.Worker = &worker.Worker{Layer: l, Consumer: routerFor(t, cfg.Consumer), Logger: logger}
		if cfg.Worker != nil {
			cfg.Worker(s.Worker)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Worker.Run(ctx) }()
		stopWorker = func() {
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("channelstest: worker: %v", err)
			}
		}
	}
	// Served as the gateway's commands serve it: NewHTTPServer's limits,
	// on a listener that lets the gateway refuse conflicting framing.
	s.HTTP = httptest.NewUnstartedServer(s.Gateway)
	s.HTTP.Config = gateway.NewHTTPServer("", s.Gateway)
	s.HTTP.Listener = gateway.NewListener(s.HTTP.Listener)
	s.HTTP.Start()
	s.URL = s.HTTP.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Gateway.Shutdown(ctx) // on timeout, Close drops what is left
		closed := make(chan struct{})
		go func() {
			_ = s.Gateway.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			// A connection that never ends would hang the test binary
			// here; fail the test instead (its goroutines are left).
			t.Fatalf("channelstest: the gateway did not stop within 10 s of Close: %d WebSockets still open", s.Gateway.Stats().WebSocketsOpen)
		}
		s.HTTP.Close()
		if stopWorker != nil {
			stopWorker()
		}
	})
	return s
}

// routerFor builds the worker's router: the application's routes, then the
// defaults.
func routerFor(t TB, c channels.Consumer) *channels.Router {
	t.Helper()
	switch c := c.(type) {
	case nil:
		return channels.WithDefaults(channels.NewRouter(), nil)
	case *channels.Router:
		return channels.WithDefaults(c, nil)
	case channels.ChannelConsumer:
		r := channels.NewRouter()
		r.Handle(c)
		return channels.WithDefaults(r, nil)
	}
	t.Fatalf("channelstest: consumer %s does not list its channels; route it in a *channels.Router", channels.ConsumerName(c))
	return nil
}

// WSURL returns the ws:// URL of path on the server.
func (s *Server) WSURL(path string) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + path
}

// DialWS connects a WSClient to path, failing the test unless the
// handshake is accepted.
func (s *Server) DialWS(path string) *WSClient {
	s.t.Helper()
	return DialWS(s.t, s.WSURL(path))
}

// NewWSClient returns a WSClient for path that has not connected yet, to
// set headers, cookies or subprotocols before Dial.
func (s *Server) NewWSClient(path string) *WSClient {
	return NewWSClient(s.t, s.WSURL(path))
}
