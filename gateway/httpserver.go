package gateway

import (
	"net/http"
	"time"
)

// NewHTTPServer returns an *http.Server for addr serving h with the limits
// the gateway's commands use: 10 s to read a request's headers, 120 s for an
// idle keep-alive connection, 64 KiB of headers at most. ReadTimeout and
// WriteTimeout stay zero: they would cut WebSockets and streamed responses,
// whose limits the Server enforces itself (HTTPTimeout, WriteTimeout,
// MaxBodySize, the WebSocket timeouts).
//
// Servers built otherwise should at least set ReadHeaderTimeout, which only
// the http.Server can enforce (a client that never finishes its headers
// otherwise holds a connection forever).
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}
