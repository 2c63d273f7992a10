package channels

import "context"

// Message is one message handed to a consumer: the channel it arrived on, its
// content, and what routing found in it.
//
// A Message is owned by the goroutine consuming it; it is not safe for
// concurrent use.
type Message struct {
	// Channel is the name of the channel the message arrived on.
	Channel string
	// Content is the message body. The consumer owns it.
	Content Content
	// ReplyChannel is the content's "reply_channel" text, or "".
	ReplyChannel string
	// Layer is the layer the message came from; Reply and Group use it.
	Layer Layer

	values   map[string]string
	consumer string
}

// NewMessage returns a message that arrived on channel of layer l.
func NewMessage(l Layer, channel string, c Content) *Message {
	return &Message{
		Channel:      channel,
		Content:      c,
		ReplyChannel: c.String("reply_channel"),
		Layer:        l,
	}
}

// PathValue returns the value captured by the named group of a routing
// filter (for example room for `^/chat/(?P<room>[^/]+)/$`), or "" when there
// is none. Despite its name, groups captured on any key are available.
func (m *Message) PathValue(name string) string { return m.values[name] }

// SetPathValue sets a value read by PathValue.
func (m *Message) SetPathValue(name, value string) {
	if m.values == nil {
		m.values = make(map[string]string)
	}
	m.values[name] = value
}

// PathValues returns a copy of every value captured by routing.
func (m *Message) PathValues() map[string]string {
	out := make(map[string]string, len(m.values))
	for k, v := range m.values {
		out[k] = v
	}
	return out
}

// Consumer returns the name of the consumer routing chose for the message,
// for logs; "" before routing.
func (m *Message) Consumer() string { return m.consumer }

// Copy returns an independent deep copy of the message.
func (m *Message) Copy() *Message {
	c := *m
	c.Content = m.Content.Clone()
	c.values = m.PathValues()
	return &c
}

// Reply sends c to the message's reply channel. Inside a consumer the send is
// held until the consumer returns (see Runner), unless Immediately is given.
// It returns ErrNoReplyChannel when the message has no reply channel.
func (m *Message) Reply(ctx context.Context, c Content, opts ...SendOption) error {
	if m.ReplyChannel == "" {
		return ErrNoReplyChannel
	}
	return Channel{Name: m.ReplyChannel, Layer: m.Layer}.Send(ctx, c, opts...)
}

// Group returns the named group on the message's layer.
func (m *Message) Group(name string) Group { return Group{Name: name, Layer: m.Layer} }
