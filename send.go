package channels

import (
	"context"
	"fmt"
	"sync"

	"github.com/gochannels/channels/internal/encoded"
	"github.com/gochannels/channels/internal/normal"
	"github.com/gochannels/channels/internal/owned"
)

// SendOption changes how Channel.Send, Group.Send and Message.Reply send.
type SendOption interface{ applySend(*sendOptions) }

type sendOptions struct{ immediately bool }

type immediately struct{}

func (immediately) applySend(o *sendOptions) { o.immediately = true }

// Immediately makes a send inside a consumer go to the layer at once instead
// of waiting in the outbox until the consumer returns. Streaming HTTP
// responses use it.
var Immediately SendOption = immediately{}

// Channel is a named channel on a layer. The zero Layer means the layer of
// the message being consumed (when called inside a consumer).
type Channel struct {
	Name  string
	Layer Layer
}

// Send sends c to the channel. Inside a consumer the message waits in the
// consumer's outbox and goes out after the consumer returns, unless
// Immediately is given; the content is copied and checked at once, so an
// invalid value is reported here. Outside a consumer it is sent at once.
func (ch Channel) Send(ctx context.Context, c Content, opts ...SendOption) error {
	l := ch.Layer
	ob := outboxFrom(ctx)
	if l == nil && ob != nil {
		l = ob.layer
	}
	if l == nil {
		return fmt.Errorf("send to %q: %w", ch.Name, ErrNoLayer)
	}
	if ob != nil && !immediate(opts) {
		if err := ValidateChannelName(ch.Name); err != nil {
			return err
		}
		if sc, ok := l.(SendChecker); ok {
			if err := sc.CheckSend(ch.Name); err != nil {
				return err
			}
		}
		// A layer that encodes every message holds it encoded: the
		// encoding is the copy (package encoded).
		if el, ok := encoded.For(l); ok {
			if msg, ok := el.Encode(ch.Name, c); ok {
				if ob.add(pending{layer: l, target: ch.Name, enc: msg, encL: el}) {
					return nil
				}
				return el.SendEncoded(ctx, ch.Name, msg) // the consumer has returned
			}
		}
		nc, err := normal.Copy(c)
		if err != nil {
			return fmt.Errorf("send to %q: %w", ch.Name, err)
		}
		if ob.add(pending{layer: l, target: ch.Name, content: nc}) {
			return nil
		}
		return owned.Send(ctx, l, ch.Name, Content(nc)) // the consumer has returned: send the copy now
	}
	if ob != nil {
		ob.noteImmediate(ch.Name)
	}
	return l.Send(ctx, ch.Name, c)
}

// SendChecker may be implemented by a layer (usually a wrapper around one)
// that refuses some sends. Channel.Send calls CheckSend before holding a
// message in a consumer's outbox, so that a refusal is reported to the
// consumer at once instead of when the outbox is flushed.
type SendChecker interface {
	CheckSend(channel string) error
}

// Group is a named group on a layer. The zero Layer means the layer of the
// message being consumed (when called inside a consumer).
type Group struct {
	Name  string
	Layer Layer
}

func (g Group) layer(ctx context.Context) (GroupLayer, error) {
	l := g.Layer
	if l == nil {
		if ob := outboxFrom(ctx); ob != nil {
			l = ob.layer
		}
	}
	if l == nil {
		return nil, fmt.Errorf("group %q: %w", g.Name, ErrNoLayer)
	}
	gl, ok := l.(GroupLayer)
	if !ok {
		return nil, fmt.Errorf("group %q: %w (%T)", g.Name, ErrGroupsUnsupported, l)
	}
	return gl, nil
}

// Add adds a channel to the group. It is never held in an outbox.
func (g Group) Add(ctx context.Context, channel string) error {
	gl, err := g.layer(ctx)
	if err != nil {
		return err
	}
	return gl.GroupAdd(ctx, g.Name, channel)
}

// Discard removes a channel from the group. It is never held in an outbox.
func (g Group) Discard(ctx context.Context, channel string) error {
	gl, err := g.layer(ctx)
	if err != nil {
		return err
	}
	return gl.GroupDiscard(ctx, g.Name, channel)
}

// Channels lists the group's members.
func (g Group) Channels(ctx context.Context) ([]string, error) {
	gl, err := g.layer(ctx)
	if err != nil {
		return nil, err
	}
	return gl.GroupChannels(ctx, g.Name)
}

// Send sends c to every member of the group; full members are skipped.
// Inside a consumer it is held in the outbox like Channel.Send.
func (g Group) Send(ctx context.Context, c Content, opts ...SendOption) error {
	gl, err := g.layer(ctx)
	if err != nil {
		return err
	}
	if ob := outboxFrom(ctx); ob != nil && !immediate(opts) {
		if err := ValidateGroupName(g.Name); err != nil {
			return err
		}
		nc, err := normal.Copy(c)
		if err != nil {
			return fmt.Errorf("send to group %q: %w", g.Name, err)
		}
		if ob.add(pending{layer: gl, target: g.Name, content: nc, group: true}) {
			return nil
		}
		c = nc
	} else if ob != nil {
		ob.noteImmediate("")
	}
	return gl.GroupSend(ctx, g.Name, c)
}

func immediate(opts []SendOption) bool {
	var o sendOptions
	for _, opt := range opts {
		opt.applySend(&o)
	}
	return o.immediately
}

// outbox holds the sends of one message's consumer until it returns.
type outbox struct {
	layer Layer // the message's layer, for sends that name none

	mu     sync.Mutex
	items  []pending
	closed bool
	// immediate holds the channels sent to with Immediately while the
	// consumer ran ("" for a group send), for answered.
	immediate []string
}

// noteImmediate records a send that bypassed the outbox.
func (o *outbox) noteImmediate(target string) {
	o.mu.Lock()
	if len(o.immediate) < 8 {
		o.immediate = append(o.immediate, target)
	}
	o.mu.Unlock()
}

// answered reports whether the consumer sent something that may reach
// reply (held in items, or sent with Immediately): a message to it, or any
// group message (the group may hold it).
func (o *outbox) answered(items []pending, reply string) bool {
	for _, p := range items {
		if p.group || p.target == reply {
			return true
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, t := range o.immediate {
		if t == "" || t == reply {
			return true
		}
	}
	return false
}

type pending struct {
	layer   Layer
	target  string
	content Content
	group   bool
	// enc, when encL is set, is the message in the layer's encoding,
	// held instead of content (see package encoded).
	enc  []byte
	encL encoded.Layer
}

// add queues p; it reports false once the outbox has been flushed, in which
// case the caller sends at once (a goroutine outliving its consumer).
func (o *outbox) add(p pending) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	o.items = append(o.items, p)
	return true
}

// take closes the outbox and returns what it held.
func (o *outbox) take() []pending {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	items := o.items
	o.items = nil
	return items
}

type outboxKey struct{}

// consumerCtx is the context a Runner gives a consumer: its parent with
// the outbox, and room for the outbox's first send, in one allocation
// (context.WithValue, the outbox and its array were three).
type consumerCtx struct {
	context.Context
	ob    outbox
	first [1]pending
}

func newConsumerCtx(parent context.Context, l Layer) *consumerCtx {
	c := &consumerCtx{Context: parent}
	c.ob.layer = l
	c.ob.items = c.first[:0]
	return c
}

// Value implements context.Context.
func (c *consumerCtx) Value(key any) any {
	if key == (outboxKey{}) {
		return &c.ob
	}
	return c.Context.Value(key)
}

// String implements fmt.Stringer, as the standard library's contexts do.
func (c *consumerCtx) String() string { return fmt.Sprint(c.Context) + ".WithValue(channels.outbox)" }

func outboxFrom(ctx context.Context) *outbox {
	ob, _ := ctx.Value(outboxKey{}).(*outbox)
	return ob
}

// InConsumer reports whether ctx belongs to a consumer run by a Runner, where
// sends are held until the consumer returns.
func InConsumer(ctx context.Context) bool { return outboxFrom(ctx) != nil }
