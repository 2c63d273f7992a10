// Package session gives consumers sessions and users, as Django Channels'
// session decorators did, in the form of channels.Middleware made by a
// Manager:
//
//   - ChannelSession: a session per connection, keyed by its reply channel,
//     that lives across the connection's messages and workers;
//   - HTTPSession: the session of the HTTP cookie seen on
//     "websocket.connect", shared with the HTTP side of the application;
//   - ChannelAndHTTPSession: both, with the HTTP session found again on
//     every later message;
//   - HTTPSessionUser, ChannelSessionUser and HTTPUser: the logged-in user
//     (UserFrom), copied from the HTTP session into the channel session on
//     connect;
//   - EnforceOrdering: a connection's messages consumed strictly in order
//     across workers.
//
// Sessions live in a Store. The stores here (memory, SQLite, PostgreSQL,
// Redis) are also scs stores, so one store serves an
// github.com/alexedwards/scs/v2 SessionManager on the HTTP side and these
// middleware on the channel side. Session data is encoded with the
// Manager's scs.Codec, scs.GobCodec by default: an HTTP session written by
// scs is read by a consumer and the other way round.
//
// # Order of middleware
//
// Middleware saves happen inside channels.Runner.Run, after the consumer and
// before the consumer's sends are flushed, so a message a consumer sends
// always finds the session it changed. When combining middleware by hand,
// put EnforceOrdering first (outermost):
//
//	ordering, err := mgr.EnforceOrdering(session.StrictOrdering)
//	c := channels.Chain(consumer, ordering, mgr.HTTPUser())
//
// # Logging out open sockets
//
// A logged-in user's WebSockets stay open after the user logs out over
// HTTP, with the user copied into their channel sessions. The user
// middleware therefore adds every socket of an authenticated user to the
// group UserGroup(id) when it connects; Manager.LogoutSockets closes those
// sockets through that group, on every gateway, with close code 4001 by
// default.
package session
