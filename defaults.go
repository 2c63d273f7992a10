package channels

import "context"

// AcceptConnection is the default "websocket.connect" consumer: it accepts
// every connection.
var AcceptConnection = ConsumerFunc(func(ctx context.Context, m *Message) error {
	return m.Reply(ctx, Content{"accept": true})
})

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
// interface channels are always consumed: "websocket.connect" accepts,
// "websocket.receive", "websocket.disconnect" and "http.disconnect" do
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
	out.Route("websocket.connect", AcceptConnection)
	out.Route("websocket.receive", Ignore)
	out.Route("websocket.disconnect", Ignore)
	out.Route("http.disconnect", Ignore)
	return out
}
