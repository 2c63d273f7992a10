// Package inline lets a worker run a message in the goroutine that sends
// it, when the worker and the layer share a process (runserver): the
// gateway's reader goroutine then reads a frame, runs its consumer and
// writes the reply itself, as a plain Go WebSocket server would, instead
// of waking a worker goroutine for every frame.
//
// A send offers its message to the worker attached for the channel (see
// Layer.AttachRunner) only when the layer holds nothing sent to the
// channel earlier and no message the worker has taken from it is still on
// its way to the worker's lanes (see Attached.Placed). The worker takes
// the offer only when it has room at once: a free consumer slot, or a
// place behind the running message of the same connection. Otherwise the
// message is queued in the layer as any other, so capacities, expiry,
// backpressure and the order of one connection's messages are those of
// the ordinary path.
package inline

import (
	"context"

	"github.com/gochannels/channels"
)

// Runner is a worker's side of an attachment.
type Runner interface {
	// Offer runs c, received on channel, in the caller's goroutine (or
	// places it behind the running message of its connection) when the
	// worker has room for it at once, and reports whether it took c.
	// When it returns false, c is the caller's again.
	Offer(channel string, c channels.Content) bool
}

// Layer is a layer's side: one that can hand sends to an attached
// Runner. Layers provide it through Register, not as methods of their
// exported types, so that it stays out of their public API.
type Layer interface {
	// AttachRunner attaches r for the named channels and returns how the
	// worker receives from now on, or nil when another runner is attached
	// for one of them.
	AttachRunner(names []string, r Runner) Attached
	// SendInline is SendOwned (see package owned) that may run the
	// message's consumer in the calling goroutine before it returns.
	SendInline(ctx context.Context, channel string, c channels.Content) error
}

// Attached is a worker's attachment to a layer.
type Attached interface {
	// Receive is the layer's Receive. Every message it returns counts as
	// on its way to the worker until Placed is called for it, and no send
	// to an attached channel is offered meanwhile.
	Receive(ctx context.Context, names ...string) (string, channels.Content, error)
	// Placed is called once for each message Receive returned, after the
	// worker has started it or placed it in its connection's lane.
	Placed()
	// Detach ends the attachment: later sends are queued in the layer.
	Detach()
}

var finders []func(channels.Layer) (Layer, bool)

// Register adds a way to find a Layer for a layer value; a layer package
// calls it from init. f must match the layer's own type exactly, never a
// type that wraps it: a wrapper that overrides Send or Receive must not
// be bypassed.
func Register(f func(channels.Layer) (Layer, bool)) { finders = append(finders, f) }

// For returns the Layer of l, if l is a layer that has one.
func For(l channels.Layer) (Layer, bool) {
	for _, f := range finders {
		if il, ok := f(l); ok {
			return il, true
		}
	}
	return nil, false
}
