package channels

import (
	"context"
	"errors"
	"time"
)

// Layer is the channel-layer contract: named FIFO queues shared by interface
// servers, workers and the delay server, possibly in different processes.
//
// Implementations must be safe for concurrent use. Delivery is at most once:
// a message is returned by at most one Receive, ever. Messages that are not
// received within the layer's expiry (60 s by default) are discarded.
type Layer interface {
	// Send enqueues a copy of c on channel; c may be changed or reused as
	// soon as Send returns. Send never blocks waiting for room: a channel
	// holding its capacity of messages gives an error wrapping
	// ErrChannelFull. An invalid name gives ErrInvalidName, a value that
	// cannot travel gives ErrInvalidContent and a message over the size
	// limit gives ErrMessageTooLarge.
	Send(ctx context.Context, channel string, c Content) error

	// Receive returns the next message on any of the named channels and the
	// name of the channel it came from, blocking until one arrives or ctx is
	// done (then it returns ctx's error). A busy channel never starves a
	// quiet one. A Receive that returns an error has taken nothing: no
	// message is lost when ctx is cancelled. A layer that had already taken
	// a message from its server when ctx ended may still return it, with a
	// nil error; callers must handle a message returned after cancellation.
	// With no channels it returns "", nil, nil at once. The caller owns the
	// returned content.
	Receive(ctx context.Context, channels ...string) (string, Content, error)

	// NewChannel returns a new channel name, pattern followed by a random,
	// unguessable suffix, that is not in use. The pattern must end in '!'
	// (process-specific: only the calling process will receive on it) or
	// '?' (single-reader).
	NewChannel(ctx context.Context, pattern string) (string, error)
}

// GroupLayer is a layer with groups: named sets of channels that a message
// can be broadcast to.
type GroupLayer interface {
	Layer

	// GroupAdd adds channel to group, or refreshes its membership. A
	// membership expires after the layer's group expiry (86 400 s by
	// default) counted from the last GroupAdd.
	GroupAdd(ctx context.Context, group, channel string) error

	// GroupDiscard removes channel from group. Removing a channel that is
	// not a member is not an error.
	GroupDiscard(ctx context.Context, group, channel string) error

	// GroupSend sends a copy of c to every member of group. Members whose
	// channel is full are skipped and counted, never reported as
	// ErrChannelFull. An empty or unknown group is not an error.
	GroupSend(ctx context.Context, group string, c Content) error

	// GroupChannels lists the current members of group.
	GroupChannels(ctx context.Context, group string) ([]string, error)
}

// Flusher is implemented by layers that can delete every message and group.
type Flusher interface {
	// Flush deletes all messages and groups and returns once the layer
	// looks empty to every client.
	Flush(ctx context.Context) error
}

// Poller is implemented by layers that can check for a waiting message
// without blocking.
type Poller interface {
	// Poll is Receive that does not wait: it returns "", nil, nil when no
	// message is waiting on any of the channels.
	Poll(ctx context.Context, channels ...string) (string, Content, error)
}

// PrefixReceiver is implemented by layers that can receive, in one call, from
// every process-specific channel sharing a prefix: ReceivePrefix(ctx,
// "websocket.send.A1!") returns the next message on any channel named
// "websocket.send.A1!<suffix>". It is how an interface server runs a single
// receive loop for all of its connections. Each prefix must end in '!'.
type PrefixReceiver interface {
	ReceivePrefix(ctx context.Context, prefixes ...string) (string, Content, error)
}

// StatsReporter is implemented by layers that report statistics.
type StatsReporter interface {
	// Stats returns layer-wide figures.
	Stats(ctx context.Context) (Stats, error)
	// ChannelStats returns figures for one channel.
	ChannelStats(ctx context.Context, channel string) (ChannelStats, error)
}

// Stats are a layer's figures. Counters count since the layer was created.
type Stats struct {
	Messages     int64  // messages waiting now, over all channels
	Channels     int64  // channels holding at least one message
	Groups       int64  // groups with at least one member
	Sent         uint64 // messages accepted by Send (and per member by GroupSend)
	Received     uint64 // messages returned by Receive
	Expired      uint64 // messages discarded unread
	Full         uint64 // Sends refused with ErrChannelFull
	GroupSkipped uint64 // group members skipped by GroupSend because their channel was full
	TooLarge     uint64 // messages refused with ErrMessageTooLarge
	Unavailable  uint64 // calls that failed because the layer's server could not be reached
}

// ChannelStats are figures for one channel.
type ChannelStats struct {
	Length    int           // messages waiting
	Capacity  int           // capacity of the channel
	Age       time.Duration // time the oldest waiting message has waited
	PerSecond float64       // messages sent per second, recently
}

// Extensions lists the optional features a layer implements, with the
// ASGI extension names: "groups", "flush", "statistics", plus "poll" and
// "prefix-receive".
func Extensions(l Layer) []string {
	var ext []string
	if _, ok := l.(GroupLayer); ok {
		ext = append(ext, "groups")
	}
	if _, ok := l.(Flusher); ok {
		ext = append(ext, "flush")
	}
	if _, ok := l.(StatsReporter); ok {
		ext = append(ext, "statistics")
	}
	if _, ok := l.(Poller); ok {
		ext = append(ext, "poll")
	}
	if _, ok := l.(PrefixReceiver); ok {
		ext = append(ext, "prefix-receive")
	}
	return ext
}

// Poll returns a waiting message on any of channels without waiting for one:
// "", nil, nil when there is none. It uses the layer's Poller when it has
// one, and otherwise a Receive bounded by a short wait (10 ms).
func Poll(ctx context.Context, l Layer, channels ...string) (string, Content, error) {
	if p, ok := l.(Poller); ok {
		return p.Poll(ctx, channels...)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	ch, c, err := l.Receive(rctx, channels...)
	if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return "", nil, nil
	}
	return ch, c, err
}
