// Package fanout lets a channel layer hand a group message to the interface
// server of a process once for all of its member channels there, instead of
// once per member: the server then parses the message and builds its
// WebSocket frame once, and writes that frame to every member's socket.
package fanout

import (
	"context"

	"github.com/gochannels/channels"
)

// Receiver is implemented by layers whose process-prefix receive can return
// one message addressed to several channels at once.
type Receiver interface {
	// ReceivePrefixMulti is channels.PrefixReceiver's ReceivePrefix,
	// except that a group message waiting at the head of several member
	// channels under the prefixes may come once for all of them: names
	// then lists those channels (two or more) and name is "". Otherwise
	// names is nil and name is the one channel, as with ReceivePrefix.
	//
	// When names is not nil, c is shared by every member and must not be
	// modified; copy it (Content.Clone) before handing it to code that may.
	ReceivePrefixMulti(ctx context.Context, prefixes ...string) (name string, names []string, c channels.Content, err error)
}

// Local is implemented by layers that live in the interface server's own
// process (the in-memory layer). The server attaches a Sink for its process
// prefixes, and from then on the layer hands every message sent to a
// channel under them straight to the sink, in the sender's goroutine,
// instead of queueing it for the server's receive loop: a consumer's reply
// reaches its connection without a hand-off to another goroutine.
type Local interface {
	// AttachLocal attaches s for the process prefixes (each ending in
	// '!'). Messages already queued under them stay queued for
	// ReceivePrefix. detach stops the deliveries; later messages are
	// queued again.
	AttachLocal(prefixes []string, s Sink) (detach func())
}

// Sink takes the messages a Local layer delivers. Its methods are called
// concurrently, from the senders' goroutines, outside the layer's locks;
// they must not block.
type Sink interface {
	// Deliver takes a message sent to one channel; c is the sink's own.
	// It reports false when no live connection or request has that
	// channel: the message is dropped (the sink counts it) and the layer
	// removes the channel from its groups, since nothing can ever receive
	// on it again.
	Deliver(channel string, c channels.Content) bool
	// DeliverGroup takes one group message for several channels under
	// the prefixes; c is shared by them and must not be modified. It
	// returns the channels that have no live connection (see Deliver).
	DeliverGroup(names []string, c channels.Content) (gone []string)
}
