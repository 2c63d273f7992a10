package generic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/gochannels/channels"
)

// ErrSendNotAvailable is returned by the Send helpers of a consumer running
// under a Demultiplexer, and refuses any other send of its to the socket's
// reply channel (Django Channels' SendNotAvailableOnDemultiplexer): the
// client expects every frame wrapped in a stream envelope, so replies go
// through the Multiplexer (MultiplexerFrom).
var ErrSendNotAvailable = errors.New("generic: sending directly is not available on a demultiplexed stream; reply through generic.MultiplexerFrom(ctx)")

// Demultiplexer serves several JSON streams over one WebSocket (Django
// Channels 1.0's WebsocketDemultiplexer). The client sends and receives
// text frames {"stream": name, "payload": {...}}.
//
//   - connect: the connection joins its groups and Connect runs (if set; it
//     may reject with channels.ErrDenyConnection); then the connection is
//     accepted, and every stream's consumer gets the "websocket.connect"
//     message, each with its own Multiplexer.
//   - receive: the frame's payload goes straight to its stream's consumer,
//     as a "websocket.receive" message on the same channel, with the same
//     reply channel and route values, whose "text" is the payload's JSON
//     (a JSONWebSocket decodes it); no other channel is involved.
//   - disconnect: the connection leaves its groups, then every stream's
//     consumer gets the "websocket.disconnect" message.
//
// A stream consumer replies through MultiplexerFrom(ctx), which wraps its
// payloads in the envelope. Its own Send helpers return
// ErrSendNotAvailable, and anything else it sends to the reply channel is
// refused (logged and counted by the runner), so no unwrapped frame reaches
// the client. Closing the socket (Conn.Close, a *channels.CloseError) works.
//
// A frame that is not an envelope (binary, not JSON, no stream, a payload
// that is not an object) or names an unknown stream is logged and counted
// (Stats) and dropped; the socket stays open.
//
// Set the fields before first use; after that a Demultiplexer is safe for
// concurrent use by many workers.
type Demultiplexer struct {
	Options

	// Consumers maps stream names to the consumers serving them, usually
	// generic consumers.
	Consumers map[string]channels.Consumer

	// Connect, when set, runs on "websocket.connect" after the groups are
	// joined and before the connection is accepted; an error (such as
	// channels.ErrDenyConnection) stops the connect there. Its Send helpers
	// return ErrSendNotAvailable, as the demultiplexer's own did.
	Connect func(ctx context.Context, c *Conn) error

	b                               built
	malformed, unknown, badPayloads atomic.Uint64
}

// DemultiplexerStats counts the frames a Demultiplexer dropped.
type DemultiplexerStats struct {
	Malformed      uint64 // binary, not JSON, not an object, or no text stream
	UnknownStreams uint64 // a stream with no consumer
	BadPayloads    uint64 // a payload missing or not a JSON object
}

// Stats returns the counts of dropped frames.
func (d *Demultiplexer) Stats() DemultiplexerStats {
	return DemultiplexerStats{Malformed: d.malformed.Load(), UnknownStreams: d.unknown.Load(), BadPayloads: d.badPayloads.Load()}
}

// Channels returns the three WebSocket channels.
func (d *Demultiplexer) Channels() []string { return append([]string(nil), websocketChannels...) }

// Name returns Options.Name, or "generic.Demultiplexer".
func (d *Demultiplexer) Name() string {
	if d.Options.Name != "" {
		return d.Options.Name
	}
	return "generic.Demultiplexer"
}

// Validate reports a configuration error, as WebSocket.Validate does, and
// a Demultiplexer without consumers.
func (d *Demultiplexer) Validate() error {
	if len(d.Consumers) == 0 {
		return errors.New("generic: Demultiplexer has no Consumers")
	}
	return d.Options.validate()
}

// Consume handles m as described on Demultiplexer, inside the session
// middleware the options ask for.
func (d *Demultiplexer) Consume(ctx context.Context, m *channels.Message) error {
	return d.b.consume(ctx, &d.Options, d.Name(), channels.ConsumerFunc(d.dispatch), m)
}

func (d *Demultiplexer) streams() []string {
	names := make([]string, 0, len(d.Consumers))
	for s := range d.Consumers {
		names = append(names, s)
	}
	slices.Sort(names)
	return names
}

func (d *Demultiplexer) dispatch(ctx context.Context, m *channels.Message) error {
	switch m.Channel {
	case "websocket.connect":
		if err := d.Options.joinGroups(ctx, m); err != nil {
			return err
		}
		if d.Connect != nil {
			own := m.Copy()
			own.Layer = &guardLayer{Layer: m.Layer, reply: m.ReplyChannel}
			if err := d.Connect(ctx, &Conn{Message: own}); err != nil {
				return err
			}
		}
		if err := m.Reply(ctx, channels.Content{"accept": true}); err != nil {
			return err
		}
		return d.everyStream(ctx, m)
	case "websocket.receive":
		return d.receive(ctx, m)
	case "websocket.disconnect":
		return errors.Join(d.Options.leaveGroups(ctx, m), d.everyStream(ctx, m))
	}
	return fmt.Errorf("generic: no handler for channel %q", m.Channel)
}

// everyStream hands m to every stream's consumer, in stream name order.
func (d *Demultiplexer) everyStream(ctx context.Context, m *channels.Message) error {
	var errs []error
	for _, s := range d.streams() {
		if err := d.toStream(ctx, s, m.Copy()); err != nil {
			errs = append(errs, fmt.Errorf("stream %q: %w", s, err))
		}
	}
	return errors.Join(errs...)
}

// toStream runs stream s's consumer on sub, a copy of the message, with
// the stream's multiplexer and the reply channel guarded.
func (d *Demultiplexer) toStream(ctx context.Context, s string, sub *channels.Message) error {
	mx := &Multiplexer{Stream: s, ReplyChannel: sub.ReplyChannel, Layer: sub.Layer}
	sub.Layer = &guardLayer{Layer: sub.Layer, reply: sub.ReplyChannel}
	return d.Consumers[s].Consume(context.WithValue(ctx, multiplexerKey{}, mx), sub)
}

func (d *Demultiplexer) receive(ctx context.Context, m *channels.Message) error {
	drop := func(counter *atomic.Uint64, why string, args ...any) error {
		counter.Add(1)
		d.logger().Warn("generic: demultiplexer dropped a frame: "+why,
			append([]any{"consumer", d.Name(), "path", m.Content.String("path"), "reply_channel", m.ReplyChannel}, args...)...)
		return nil
	}
	text, ok := m.Content["text"].(string)
	if !ok {
		return drop(&d.malformed, "binary frame (the envelope is JSON text)")
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &env); err != nil {
		return drop(&d.malformed, "not a JSON object", "error", err)
	}
	var stream string
	if err := json.Unmarshal(env["stream"], &stream); err != nil || env["stream"] == nil {
		return drop(&d.malformed, `no text "stream"`)
	}
	c, ok := d.Consumers[stream]
	if !ok || c == nil {
		return drop(&d.unknown, "unknown stream", "stream", stream)
	}
	payload := bytes.TrimSpace(env["payload"])
	if len(payload) == 0 || payload[0] != '{' {
		return drop(&d.badPayloads, "payload is not a JSON object", "stream", stream)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, payload); err != nil {
		return drop(&d.badPayloads, "payload is not valid JSON", "stream", stream, "error", err)
	}
	sub := m.Copy()
	delete(sub.Content, "bytes")
	sub.Content["text"] = compact.String()
	return d.toStream(ctx, stream, sub)
}

type multiplexerKey struct{}

// MultiplexerFrom returns the Multiplexer of the stream whose consumer is
// running with ctx, or nil outside a Demultiplexer.
func MultiplexerFrom(ctx context.Context) *Multiplexer {
	mx, _ := ctx.Value(multiplexerKey{}).(*Multiplexer)
	return mx
}

// Multiplexer sends a stream consumer's payloads to its socket, wrapped as
// {"stream": Stream, "payload": payload} (Django Channels'
// WebsocketMultiplexer). It is safe for concurrent use.
type Multiplexer struct {
	// Stream is the stream's name.
	Stream string
	// ReplyChannel is the socket's reply channel.
	ReplyChannel string
	// Layer is the layer of the socket's messages.
	Layer channels.Layer
}

// Send sends payload (JSON-encoded, usually a map or a struct) to the
// socket on the stream. Inside a consumer it waits in the outbox like any
// send.
func (mx *Multiplexer) Send(ctx context.Context, payload any) error {
	c, err := Encode(mx.Stream, payload)
	if err != nil {
		return err
	}
	return channels.Channel{Name: mx.ReplyChannel, Layer: mx.Layer}.Send(ctx, c)
}

// GroupSend sends payload on the stream to every socket in group.
func (mx *Multiplexer) GroupSend(ctx context.Context, group string, payload any) error {
	return GroupSend(ctx, channels.Group{Name: group, Layer: mx.Layer}, mx.Stream, payload, false)
}

// Encode returns the message that carries payload on stream:
// {"text": `{"stream": stream, "payload": payload}`}.
func Encode(stream string, payload any) (channels.Content, error) {
	b, err := json.Marshal(struct {
		Stream  string `json:"stream"`
		Payload any    `json:"payload"`
	}{stream, payload})
	if err != nil {
		return nil, fmt.Errorf("generic: encode payload for stream %q: %w", stream, err)
	}
	return channels.Content{"text": string(b)}, nil
}

// GroupSend sends payload on stream to every socket in group, and closes
// them after it when close is true. It can be called from anywhere: inside
// a consumer the send waits in its outbox, outside it goes at once.
func GroupSend(ctx context.Context, group channels.Group, stream string, payload any, close bool) error {
	c, err := Encode(stream, payload)
	if err != nil {
		return err
	}
	if close {
		c["close"] = true
	}
	return group.Send(ctx, c)
}

// guardLayer is the layer a stream consumer's message carries: the socket's
// layer, except that it refuses sends to the socket's reply channel.
type guardLayer struct {
	channels.Layer
	reply string
}

func (g *guardLayer) String() string { return fmt.Sprint(g.Layer) }

// CheckSend implements channels.SendChecker: a stream consumer's send to the
// socket's reply channel fails when it is made, not when the outbox is
// flushed.
func (g *guardLayer) CheckSend(channel string) error {
	if channel == g.reply {
		return fmt.Errorf("%w (to %s)", ErrSendNotAvailable, channel)
	}
	return nil
}

// Send refuses the reply channel and passes the rest on.
func (g *guardLayer) Send(ctx context.Context, channel string, c channels.Content) error {
	if err := g.CheckSend(channel); err != nil {
		return err
	}
	return g.Layer.Send(ctx, channel, c)
}

func (g *guardLayer) groups() (channels.GroupLayer, error) {
	gl, ok := g.Layer.(channels.GroupLayer)
	if !ok {
		return nil, fmt.Errorf("generic: %w (%T)", channels.ErrGroupsUnsupported, g.Layer)
	}
	return gl, nil
}

func (g *guardLayer) GroupAdd(ctx context.Context, group, channel string) error {
	gl, err := g.groups()
	if err != nil {
		return err
	}
	return gl.GroupAdd(ctx, group, channel)
}

func (g *guardLayer) GroupDiscard(ctx context.Context, group, channel string) error {
	gl, err := g.groups()
	if err != nil {
		return err
	}
	return gl.GroupDiscard(ctx, group, channel)
}

func (g *guardLayer) GroupSend(ctx context.Context, group string, c channels.Content) error {
	gl, err := g.groups()
	if err != nil {
		return err
	}
	return gl.GroupSend(ctx, group, c)
}

func (g *guardLayer) GroupChannels(ctx context.Context, group string) ([]string, error) {
	gl, err := g.groups()
	if err != nil {
		return nil, err
	}
	return gl.GroupChannels(ctx, group)
}

func (g *guardLayer) Poll(ctx context.Context, names ...string) (string, channels.Content, error) {
	return channels.Poll(ctx, g.Layer, names...)
}
