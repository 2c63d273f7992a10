package generic

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/gochannels/channels"
)

// MalformedPolicy says what a JSONWebSocket does with a frame it cannot
// decode: a binary frame, text that is not JSON, or JSON that does not fit
// the value type.
type MalformedPolicy int

const (
	// CloseMalformed closes the socket with MalformedCloseCode (1007,
	// "invalid frame payload data", by default). It is the default.
	CloseMalformed MalformedPolicy = iota
	// SkipMalformed logs the frame and ignores it; the socket stays open.
	SkipMalformed
)

// DefaultMalformedCloseCode is the close code for a malformed frame:
// 1007, invalid frame payload data.
const DefaultMalformedCloseCode = 1007

// JSONWebSocket is a WebSocket consumer whose frames are JSON (Django
// Channels' JsonWebsocketConsumer): each text frame is decoded into a T and
// passed to Receive, and c.SendJSON encodes replies. T may be a struct, a
// map, any or json.RawMessage.
//
// A frame that cannot be decoded is counted (MalformedFrames), logged, and
// handled as Malformed says: by default the socket is closed with 1007.
// Nothing else fails; Receive does not run.
//
// Set the fields before first use; after that a JSONWebSocket is safe for
// concurrent use by many workers.
type JSONWebSocket[T any] struct {
	Options

	// Connect runs on "websocket.connect", after the groups are joined;
	// without it the connection is accepted.
	Connect func(ctx context.Context, c *Conn) error
	// Receive runs with every decoded frame.
	Receive func(ctx context.Context, c *Conn, v T) error
	// Disconnect runs on "websocket.disconnect", after the groups are left.
	Disconnect func(ctx context.Context, c *Conn) error

	// Malformed is what happens to a frame that cannot be decoded.
	Malformed MalformedPolicy
	// MalformedCloseCode is the code CloseMalformed closes with. Zero
	// means DefaultMalformedCloseCode.
	MalformedCloseCode int

	b         built
	malformed atomic.Uint64
}

// Channels returns the three WebSocket channels.
func (j *JSONWebSocket[T]) Channels() []string {
	return append([]string(nil), websocketChannels...)
}

// Name returns Options.Name, or "generic.JSONWebSocket".
func (j *JSONWebSocket[T]) Name() string {
	if j.Options.Name != "" {
		return j.Options.Name
	}
	return "generic.JSONWebSocket"
}

// Validate reports a configuration error, as WebSocket.Validate does.
func (j *JSONWebSocket[T]) Validate() error { return j.Options.validate() }

// MalformedFrames returns how many frames could not be decoded.
func (j *JSONWebSocket[T]) MalformedFrames() uint64 { return j.malformed.Load() }

// Consume runs the hooks for m, inside the session middleware the options
// ask for.
func (j *JSONWebSocket[T]) Consume(ctx context.Context, m *channels.Message) error {
	return j.b.consume(ctx, &j.Options, j.Name(), channels.ConsumerFunc(j.dispatch), m)
}

func (j *JSONWebSocket[T]) dispatch(ctx context.Context, m *channels.Message) error {
	return dispatchHooks(ctx, &j.Options, m, j.Connect, j.Disconnect, func(ctx context.Context, c *Conn) error {
		text, ok := c.Text()
		if !ok {
			return j.reject(c, "a binary frame where JSON text was expected", nil)
		}
		var v T
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			return j.reject(c, "a frame that is not the expected JSON", err)
		}
		if j.Receive == nil {
			return nil
		}
		return j.Receive(ctx, c, v)
	})
}

func (j *JSONWebSocket[T]) reject(c *Conn, what string, err error) error {
	j.malformed.Add(1)
	log := j.logger().With("consumer", j.Name(), "path", c.Content.String("path"), "reply_channel", c.ReplyChannel)
	if err != nil {
		log = log.With("error", err)
	}
	if j.Malformed == SkipMalformed {
		log.Warn("generic: ignoring " + what)
		return nil
	}
	code := j.MalformedCloseCode
	if code == 0 {
		code = DefaultMalformedCloseCode
	}
	log.Warn("generic: closing the socket after "+what, "code", code)
	return &channels.CloseError{Code: code, Reason: fmt.Sprintf("generic: %s", what)}
}
