// Package channels is the core of Channels for Go: the channel-layer contract
// that interface servers, workers and the delay server share, the message and
// consumer types that application code is written against, the router, and
// consumer atomicity.
//
// The system has three roles joined only by a [Layer]:
//
//   - an interface server (package gateway) turns HTTP and WebSocket traffic
//     into messages on well-known channels ("http.request",
//     "websocket.connect", "websocket.receive", ...) and relays what arrives
//     on each connection's reply channel back to the client;
//   - workers (package worker) receive from the channels a [Router] lists,
//     run the matching [Consumer], and flush what the consumer sent;
//   - the layer (package inmemory, package redislayer) carries [Content]
//     between them: named FIFO queues with capacity and expiry, and groups
//     for broadcast.
//
// A consumer is a function of one message:
//
//	r := channels.NewRouter()
//	r.Route("websocket.receive", channels.ConsumerFunc(
//		func(ctx context.Context, m *channels.Message) error {
//			return m.Reply(ctx, channels.Content{"text": m.Content.String("text")})
//		}), channels.Path(`^/echo/$`))
//
// # Consumer atomicity
//
// While a consumer runs, the messages it sends with [Channel.Send],
// [Group.Send] and [Message.Reply] are held in a per-message outbox and sent,
// in order, after the consumer and all of its middleware return (also when it
// fails or panics). [Immediately] bypasses the outbox. Code that is not
// running inside a consumer sends at once. See [Runner].
//
// # Content
//
// [Content] is a map of ASGI values: nil, bool, int64, float64, string (text),
// []byte (bytes), []any and map[string]any. Text and bytes are distinct types
// everywhere. Other Go integer and float types, typed slices and typed maps
// are converted when a message is sent; anything else (structs, channels,
// functions) is refused at Send with [ErrInvalidContent].
package channels
