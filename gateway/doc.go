// Package gateway is the interface server (Daphne's role): an http.Handler
// that turns HTTP requests and WebSocket connections into messages on a
// channel layer, and relays what the application sends back on each
// connection's reply channel to the client.
//
//	gw := &gateway.Server{Layer: layer}
//	srv := gateway.NewHTTPServer(":8000", gw)
//	ln, err := net.Listen("tcp", srv.Addr)
//	...
//	go srv.Serve(gateway.NewListener(ln))
//	...
//	gw.Shutdown(ctx) // closes WebSockets with 1001, waits for requests
//	srv.Shutdown(ctx)
//
// # Reply channels and the receive loop
//
// A Server picks a random 12-character ID when it starts and names every
// reply channel "http.response.<ID>!<suffix>" or
// "websocket.send.<ID>!<suffix>". One goroutine receives every reply: with a
// layer that implements channels.PrefixReceiver it asks for the next
// message under either prefix; otherwise it calls Receive with the list of
// every live reply channel, which costs O(open connections) per call. The
// message is handed to the connection registered under its exact name;
// replies for unknown or finished connections are dropped and counted.
// With the in-memory and Redis layers, a group message for several
// connections of the server comes once with their names: it is parsed and
// its WebSocket frame built once, and that frame is queued on each member's
// socket, under each socket's own outbound limit and slow-client policy.
// The loop starts on first use (ServeHTTP or ServerID) and stops at the end
// of Shutdown or Close.
//
// A reply that is a plain frame, for a socket with nothing queued or being
// written, is written by the goroutine that has it, with one non-blocking
// system call; only what the socket does not take at once, closes, and
// frames queued behind others go to the socket's writer goroutine, which
// exists only while its queue is not empty.
//
// With a layer in the server's own process (the in-memory layer, as
// runserver uses), the loop is bypassed: the layer hands every message for
// the server's prefixes to the server in the sender's goroutine, so a
// consumer's reply is written to its socket by the worker goroutine that
// ran the consumer. Such a sender waits up to 100 ms for room when the
// socket's outbound queue is full while its writer works, as it would wait
// for a full channel, before the slow-client policy applies.
//
// # HTTP
//
// A request becomes an http.request message with every key of the ASGI 1.0
// format. The real HTTP version is reported; "scheme" is "https" for TLS
// requests, or the X-Forwarded-Proto of a trusted proxy. Header names are
// lower-cased; Host comes first and the other names follow in sorted order
// (Go's HTTP server does not keep the order between different names; the
// values of a repeated name keep theirs). Names containing '_' are dropped.
// Bodies up to InlineBodySize travel in "body"; the rest follows as Request
// Body Chunks on the "body_channel", waiting while that channel is full. A
// body over MaxBodySize is answered with 413.
//
// The response is written as it arrives: the first message must carry
// "status"; each message's "content" is written and flushed, so responses
// without a Content-Length are chunked and streaming works. Go's content
// sniffing is disabled: a response has a Content-Type only when the
// application gave one. Response headers keep the order of a repeated name;
// net/http writes different names in sorted order. When the response is
// complete (or the request ends otherwise: error page, timeout, client gone)
// http.disconnect {reply_channel, path} is sent, as in Channels 1.0;
// WantsHTTPDisconnect can leave it out after a complete response when the
// application does not consume it (runserver and an App's gateway command
// ask the application's router). HTTPTimeout bounds the
// whole exchange; HTTPHandler serves plain HTTP in process instead, and
// HTTPTimeout does not apply to it.
//
// # WebSocket
//
// The handshake is held open until the application answers the
// websocket.connect message ({"accept": true}, a frame, or a close, which
// rejects it with 403) or ConnectTimeout expires (403). A rejected or
// abandoned handshake still produces websocket.disconnect with code 1006
// and order 1 so that the application can clean up. Frames become
// websocket.receive messages numbered from order 1; the end of the
// connection becomes websocket.disconnect with order n+1 and code:
//
//   - the peer's close code when it sent a close frame, including the echo
//     of a close the server started (1005 when the frame had no code);
//   - otherwise the code the server closed with, when it sent one (1008 for
//     a slow client, 1009 for a message over MaxMessageSize);
//   - otherwise 1006 (connection lost, ping timeout, Close).
//
// A full websocket.connect channel answers 503. A frame that finds
// websocket.receive full waits, first come, first served behind the frames
// of other sockets that found it full (the socket is not read meanwhile);
// when it has waited half a second the socket is closed with 1013 and muted
// (no further receive or disconnect messages). A websocket.disconnect or
// http.disconnect that finds its channel full is retried in the background,
// in order, for up to five seconds, then dropped and counted
// (Stats.DroppedDisconnects), so that a thousand sockets closing at once
// still tell the application to leave their groups. A client that does not
// read its frames is closed with 1008 (and counted in Stats.SlowClients)
// when OutboundQueue messages (or OutboundBytes, 16 MiB, of frames) are
// waiting for it, or when it has taken no
// bytes for SlowClientTimeout (5 s) while frames waited. Its socket's
// kernel send buffer is kept small (64 KiB), so that the time runs from
// about when the client stops reading, not from when megabytes of buffers
// have filled: at 128 KiB/s such a client is closed about 7 s after it
// stops. When the layer reports that it lost its data (a Redis server
// restarted empty; see redislayer.Layer.OnDataLoss), every open WebSocket
// is closed with 1012 (CloseLayerDataLost), so that its client reconnects
// and the application adds it to its groups again; Stats.DataLossCloses
// counts them.
//
// # Idle sockets
//
// An open WebSocket waiting for its client holds no read buffer, and on
// Linux no goroutine either: once it has been quiet (50 ms after the
// handshake, or a second after its last frame) its read loop parks. The
// goroutine ends, and the socket waits in an epoll set of the gateway's,
// watched by one goroutine for every parked socket of the process; when
// the socket becomes readable (a frame, a pong, a close, the client gone)
// a new read loop starts and carries on. Closing the socket, from any side,
// starts it too, so that the connection ends as usual. A keepalive's ping
// and pong do not wake a parked socket for longer than it takes to read
// them. Stats.WebSocketsParked
// counts parked sockets. Elsewhere, and on TLS sockets, each open socket
// keeps its read loop goroutine.
//
// # Origin checks
//
// Browsers send an Origin header with every WebSocket handshake; checking it
// stops other web sites from opening sockets with your users' cookies
// (cross-site WebSocket hijacking). The rules, applied before the
// application hears of the connection, in this order:
//
//	Handshake                                    Answer
//	--------------------------------------------------------------------------
//	several Origin headers                       403
//	no Origin header (a browser always sends     403; 101 with AllowMissingOrigin
//	  one)                                         or "*" in AllowedOrigins
//	Sec-WebSocket-Origin but no Origin           as no Origin: it is not an origin
//	AllowedOrigins contains "*"                  101 for every origin
//	Origin "null" (sandboxed frame, file://)     403 unless "null" is listed
//	Origin not a URL with a host                 403
//	AllowedOrigins empty (the default):
//	  same scheme, host and port as the request  101
//	  other host                                 403
//	  other scheme (http page, https request,    403
//	    or the reverse)
//	  other port, when Host carries a port       403
//	AllowedOrigins lists patterns:
//	  the origin matches one                     101 (the request's own host
//	                                               is not implied)
//	  it matches none                            403
//
// The request's scheme is "https" on TLS connections and otherwise "http",
// unless a peer in TrustedProxies says otherwise with X-Forwarded-Proto;
// the header is ignored from anyone else, so that a client cannot claim the
// scheme its page was served with. Origin schemes "ws" and "wss" count as
// "http" and "https". The origin's port is its explicit port, or 80/443 from
// its scheme; a Host without a port (as behind most proxies) accepts any.
//
// Patterns are written [scheme://]host[:port]. A host "*.example.com"
// matches a.example.com and a.b.example.com but neither example.com nor
// badexample.com; list "example.com" as well to allow it. A pattern
// without a scheme matches any scheme, one without a port any port.
// "*" allows every origin, and handshakes without one (a warning is logged
// at startup).
//
// A refused handshake gets 403 (and its connection is closed), is logged
// with the reason and counted in Stats.OriginRejected; nothing is sent to
// the layer.
//
// # Proxies
//
// X-Forwarded-For, X-Forwarded-Port and X-Forwarded-Proto are believed only
// when the TCP peer is in TrustedProxies, for HTTP and WebSockets alike. The
// client address is then the last element of the first X-Forwarded-For
// header (the one the trusted proxy added), split into host and port when
// it has one (port 0 otherwise), with X-Forwarded-Port replacing the port.
//
// # Errors and framing
//
// Every error page the server writes (400, 403, 405, 413, 426, 500, 503),
// including a refused handshake, closes the connection after it
// (Connection: close), so that a client or proxy that got one starts
// afresh. A chunked request body that is not valid chunked encoding gets
// 400 and a log line; the application, when it already had the request,
// gets a "closed" body chunk. Served by NewHTTPServer on a listener from
// NewListener, as the commands serve it, a request carrying both
// Content-Length and Transfer-Encoding, or Transfer-Encoding on HTTP/1.0,
// gets 400, a log line and a closed connection (RFC 9112 §6.1), without
// reaching the application; net/http alone would hide the conflict and
// read the body as chunked.
//
// # Limits
//
// Every wait and buffer is bounded by default (see the Server fields);
// disabling a limit with a negative value logs a warning. An incoming
// WebSocket message is read in 32 KiB chunks, so one over MaxMessageSize
// costs about MaxMessageSize of memory before it is refused with 1009,
// however large the frame claims to be. The http.Server
// that calls ServeHTTP must bound the time to read request headers itself
// (ReadHeaderTimeout); NewHTTPServer returns one that does.
package gateway
