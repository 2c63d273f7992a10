package channels

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"strings"
)

// Consumer handles messages. Consume is called with one message; what it
// sends is held until it returns (consumer atomicity). It must not block
// waiting for another message. Returning a *CloseError closes or rejects the
// message's WebSocket; ErrConsumeLater puts the message back to be consumed
// later; any other error is logged and counted.
type Consumer interface {
	Consume(ctx context.Context, m *Message) error
}

// ConsumerFunc adapts an ordinary function to a Consumer.
type ConsumerFunc func(ctx context.Context, m *Message) error

// Consume calls f(ctx, m).
func (f ConsumerFunc) Consume(ctx context.Context, m *Message) error { return f(ctx, m) }

// Middleware wraps a consumer, as func(http.Handler) http.Handler wraps a
// handler: sessions, authentication and ordering are middleware.
type Middleware func(Consumer) Consumer

// Chain returns c wrapped in mw, the first middleware outermost.
func Chain(c Consumer, mw ...Middleware) Consumer {
	for i := len(mw) - 1; i >= 0; i-- {
		c = mw[i](c)
	}
	return c
}

// ChannelConsumer is a consumer that knows which channels it consumes, such
// as a *Router or a generic WebSocket consumer. Workers receive on the
// channels it lists.
type ChannelConsumer interface {
	Consumer
	Channels() []string
}

// Namer may be implemented by consumers to give the name used in logs.
type Namer interface {
	Name() string
}

// ConsumerName returns a readable name for c: its Name method when it has
// one, the function name of a ConsumerFunc, or its type.
func ConsumerName(c Consumer) string {
	switch c := c.(type) {
	case nil:
		return "<nil>"
	case Namer:
		return c.Name()
	case ConsumerFunc:
		if f := runtime.FuncForPC(reflect.ValueOf(c).Pointer()); f != nil {
			name := f.Name()
			if i := strings.LastIndexByte(name, '/'); i >= 0 {
				name = name[i+1:]
			}
			return name
		}
	}
	return fmt.Sprintf("%T", c)
}
