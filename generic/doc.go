// Package generic has the class-based consumers of Django Channels in Go
// form: WebSocket (a consumer with Connect, Receive and Disconnect hooks),
// JSONWebSocket (the same with JSON frames decoded into a Go value), and
// Demultiplexer (several JSON streams over one socket, each served by its
// own consumer, replies wrapped as {"stream": ..., "payload": ...}).
//
// Each is a channels.ChannelConsumer, so one route serves all three
// WebSocket channels:
//
//	r.Handle(&generic.WebSocket{Receive: echo}, channels.Path(`^/echo/$`))
//
// Hooks get a *Conn, the message with helpers bound to it: Send, SendBytes,
// SendJSON, Close, GroupSend. What they send waits in the consumer's outbox
// until the consumer returns, like every send inside a consumer.
//
// Options shared by the three types add the connection's groups (joined
// before Connect runs, left before Disconnect runs) and the session
// middleware of package session, composed in a fixed order: ordering
// outermost, then the user or session middleware, then the hooks.
package generic
