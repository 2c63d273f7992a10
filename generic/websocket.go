package generic

import (
	"context"
	"errors"
	"fmt"

	"github.com/gochannels/channels"
)

// WebSocket is a WebSocket consumer built from hooks (Django Channels'
// WebsocketConsumer). Route it with Router.Handle; it consumes
// "websocket.connect", "websocket.receive" and "websocket.disconnect":
//
//   - connect: the connection joins its groups, then Connect runs; without
//     Connect the connection is accepted. A Connect hook must accept
//     (c.Accept, or any frame), reject (return channels.ErrDenyConnection
//     or call c.Close) or leave the socket waiting for another consumer.
//   - receive: Receive runs for every frame (c.Text or c.Bytes); without it
//     frames are ignored.
//   - disconnect: the connection leaves its groups, then Disconnect runs.
//
// Under a Demultiplexer the default connect does not accept (the
// demultiplexer has) and the Send helpers return ErrSendNotAvailable.
//
// Set the fields before first use; after that a WebSocket is safe for
// concurrent use by many workers.
type WebSocket struct {
	Options

	// Connect runs on "websocket.connect", after the groups are joined.
	Connect func(ctx context.Context, c *Conn) error
	// Receive runs on every "websocket.receive".
	Receive func(ctx context.Context, c *Conn) error
	// Disconnect runs on "websocket.disconnect", after the groups are left.
	Disconnect func(ctx context.Context, c *Conn) error

	b built
}

// Channels returns the three WebSocket channels.
func (ws *WebSocket) Channels() []string { return append([]string(nil), websocketChannels...) }

// Name returns Options.Name, or "generic.WebSocket".
func (ws *WebSocket) Name() string {
	if ws.Options.Name != "" {
		return ws.Options.Name
	}
	return "generic.WebSocket"
}

// Validate reports a configuration error: options that need a
// session.Manager without one, or slight ordering (wrapping
// session.ErrSlightOrdering). Consume also reports it, rejecting sockets.
func (ws *WebSocket) Validate() error { return ws.Options.validate() }

// Consume runs the hooks for m, inside the session middleware the options
// ask for.
func (ws *WebSocket) Consume(ctx context.Context, m *channels.Message) error {
	return ws.b.consume(ctx, &ws.Options, ws.Name(), channels.ConsumerFunc(ws.dispatch), m)
}

func (ws *WebSocket) dispatch(ctx context.Context, m *channels.Message) error {
	return dispatchHooks(ctx, &ws.Options, m, ws.Connect, ws.Disconnect, func(ctx context.Context, c *Conn) error {
		if ws.Receive == nil {
			return nil
		}
		return ws.Receive(ctx, c)
	})
}

// dispatchHooks routes a message to the hook of its channel, with the
// connection's groups joined before connect and left before disconnect.
func dispatchHooks(ctx context.Context, o *Options, m *channels.Message, connect, disconnect, receive func(context.Context, *Conn) error) error {
	c := &Conn{Message: m}
	switch m.Channel {
	case "websocket.connect":
		if err := o.joinGroups(ctx, m); err != nil {
			return err
		}
		if connect == nil {
			return c.Accept(ctx)
		}
		return connect(ctx, c)
	case "websocket.receive":
		return receive(ctx, c)
	case "websocket.disconnect":
		err := o.leaveGroups(ctx, m)
		if disconnect != nil {
			err = errors.Join(err, disconnect(ctx, c))
		}
		return err
	}
	return fmt.Errorf("generic: no handler for channel %q", m.Channel)
}
