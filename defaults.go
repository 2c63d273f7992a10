package channels

import (
	"context"
	"strings"
)

// AcceptConnection is a "websocket.connect" consumer that accepts every
// connection: the default one of a router whose AcceptUnrouted is set.
var AcceptConnection = ConsumerFunc(func(ctx context.Context, m *Message) error {
	return m.Reply(ctx, Content{"accept": true})
})

// ErrUnroutedConnection is the error RejectUnrouted returns: a
// *CloseError, so the handshake is rejected with 403.
var ErrUnroutedConnection error = &CloseError{Reason: "no route handles the WebSocket's path"}

// RejectUnrouted is a "websocket.connect" consumer that rejects every
// connection it is given with ErrUnroutedConnection (403).
var RejectUnrouted = ConsumerFunc(func(ctx context.Context, m *Message) error {
	return ErrUnroutedConnection
})

// connectDefault returns the default "websocket.connect" consumer behind
// r: when r routes some WebSocket channel, a connection is accepted only if
// one of r's "websocket.receive" or "websocket.disconnect" routes takes
// its path, and rejected with 403 otherwise (no route handles it, as
// Django Channels' URL router refuses it); when r routes no WebSocket
// channel at all, or r.AcceptUnrouted is set, every connection is
// accepted.
func connectDefault(r *Router) Consumer {
	if r.AcceptUnrouted {
		return AcceptConnection
	}
	return ConsumerFunc(func(ctx context.Context, m *Message) error {
		routesSockets := false
		for _, ch := range r.Channels() {
			if strings.HasPrefix(ch, "websocket.") {
				routesSockets = true
				break
			}
		}
		if !routesSockets {
			return AcceptConnection(ctx, m)
		}
		for _, ch := range []string{"websocket.receive", "websocket.disconnect"} {
			if _, _, ok := r.Match(&Message{Channel: ch, Content: m.Content, ReplyChannel: m.ReplyChannel, Layer: m.Layer}); ok {
				return AcceptConnection(ctx, m)
			}
		}
		return ErrUnroutedConnection
	})
}

// Ignore is a consumer that does nothing; it is the default for
// "websocket.receive" and "websocket.disconnect".
var Ignore = ConsumerFunc(func(context.Context, *Message) error { return nil })

// NotFound is the default "http.request" consumer: a plain 404 response.
var NotFound = ConsumerFunc(func(ctx context.Context, m *Message) error {
	return m.Reply(ctx, Content{
		"status":  int64(404),
		"headers": []any{[]any{[]byte("Content-Type"), []byte("text/plain; charset=utf-8")}},
		"content": []byte("404 Not Found\n"),
	})
})

// WithDefaults returns a router that tries r first and then the default
// routes that workers install after the application's own, so that the
// interface channels are always consumed: "websocket.connect" accepts a
// connection whose path r routes for "websocket.receive" or
// "websocket.disconnect" and rejects the others with 403 (every connection
// is accepted when r routes no WebSocket channel or r.AcceptUnrouted is
// set), "websocket.receive", "websocket.disconnect" and "http.disconnect" do
// nothing, and "http.request" goes to httpDefault (NotFound when nil).
// Consuming http.disconnect by default keeps that channel from filling up
// when the application does not care about it.
func WithDefaults(r *Router, httpDefault Consumer) *Router {
	if httpDefault == nil {
		httpDefault = NotFound
	}
	out := NewRouter()
	out.Include(r)
	out.Route("http.request", httpDefault)
	out.Route("websocket.connect", connectDefault(r))
	out.Route("websocket.receive", Ignore)
	out.Route("websocket.disconnect", Ignore)
	out.Route("http.disconnect", Ignore)
	return out
}
