package gateway

import (
	"net/http"
	"time"
)

// NewHTTPServer returns an *http.Server for addr serving h with the limits
// the gateway's commands use: 10 s to read a request's headers, 120 s for an
// idle keep-alive connection, 64 KiB of headers at most. Serve it on a
// listener from NewListener so that requests with conflicting framing
// headers are refused (see NewListener). ReadTimeout and
// WriteTimeout stay zero: they would cut WebSockets and streamed responses,
// whose limits the Server enforces itself (HTTPTimeout, WriteTimeout,
// MaxBodySize, the WebSocket timeouts).
//
// Servers built otherwise should at least set ReadHeaderTimeout, which only
// the http.Server can enforce (a client that never finishes its headers
// otherwise holds a connection forever).
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	if h == nil {
		h = http.DefaultServeMux
	}
	return &http.Server{
		Addr:              addr,
		Handler:           framingHandler{h},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       framingContext,
	}
}
