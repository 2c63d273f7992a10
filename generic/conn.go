package generic

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/gochannels/channels"
)

// Conn is a WebSocket message handed to a hook, with helpers that reply on
// its connection. It embeds the message, so c.PathValue, c.Content and
// c.ReplyChannel work as on the message. A Conn is owned by the hook it is
// given to and must not be kept after the hook returns.
type Conn struct {
	*channels.Message
}

// Text returns the text of a "websocket.receive" frame and whether the
// frame was text (a frame has text or bytes, never both).
func (c *Conn) Text() (string, bool) {
	s, ok := c.Content["text"].(string)
	return s, ok
}

// Bytes returns the payload of a binary frame, or nil.
func (c *Conn) Bytes() []byte { return c.Content.Bytes("bytes") }

// demuxed reports whether the message is a demultiplexer's, whose replies
// must go through the multiplexer.
func (c *Conn) demuxed() bool {
	_, ok := c.Layer.(*guardLayer)
	return ok
}

// realLayer is the layer to send on when the demultiplexer's guard must be
// bypassed (accept, close).
func (c *Conn) realLayer() channels.Layer {
	if g, ok := c.Layer.(*guardLayer); ok {
		return g.Layer
	}
	return c.Layer
}

func (c *Conn) reply(ctx context.Context, content channels.Content) error {
	if c.demuxed() {
		return fmt.Errorf("%w (stream consumer on %q)", ErrSendNotAvailable, c.Channel)
	}
	return c.Message.Reply(ctx, content)
}

// Accept accepts the connection during "websocket.connect" without sending
// a frame. Under a demultiplexer, which accepts itself, it does nothing.
func (c *Conn) Accept(ctx context.Context) error {
	if c.demuxed() {
		return nil
	}
	return c.Message.Reply(ctx, channels.Content{"accept": true})
}

// Send sends a text frame on the connection. Under a demultiplexer it
// returns ErrSendNotAvailable: reply through MultiplexerFrom(ctx).
func (c *Conn) Send(ctx context.Context, text string) error {
	return c.reply(ctx, channels.Content{"text": text})
}

// SendBytes sends a binary frame on the connection. Under a demultiplexer
// it returns ErrSendNotAvailable.
func (c *Conn) SendBytes(ctx context.Context, b []byte) error {
	return c.reply(ctx, channels.Content{"bytes": b})
}

// SendJSON sends v encoded as JSON in a text frame. Under a demultiplexer
// it returns ErrSendNotAvailable.
func (c *Conn) SendJSON(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("generic: encode reply: %w", err)
	}
	return c.reply(ctx, channels.Content{"text": string(b)})
}

// Close closes the connection with code, after what the consumer sent
// before; 0 means 1000 ({"close": true}). Application codes are 1000 and
// 3000–4999. During "websocket.connect" it rejects the handshake (HTTP
// 403). It works under a demultiplexer too, closing the whole socket.
func (c *Conn) Close(ctx context.Context, code int) error {
	var v any = true
	if code != 0 {
		if !channels.ValidCloseCode(code) {
			return fmt.Errorf("generic: close code %d: use 1000 or 3000-4999", code)
		}
		v = int64(code)
	}
	return channels.Channel{Name: c.ReplyChannel, Layer: c.realLayer()}.Send(ctx, channels.Content{"close": v})
}

// GroupSend sends a text frame to every connection in group.
func (c *Conn) GroupSend(ctx context.Context, group, text string) error {
	return c.Group(group).Send(ctx, channels.Content{"text": text})
}

// GroupSendJSON sends v encoded as JSON in a text frame to every connection
// in group.
func (c *Conn) GroupSendJSON(ctx context.Context, group string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("generic: encode group message: %w", err)
	}
	return c.Group(group).Send(ctx, channels.Content{"text": string(b)})
}
