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
