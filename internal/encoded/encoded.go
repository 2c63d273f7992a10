// Package encoded lets a consumer's outbox hold a message in its layer's
// own encoding instead of a copy of its content.
//
// A send made inside a consumer waits in the consumer's outbox until the
// consumer returns, so the outbox cannot keep the caller's map, which the
// consumer may change or reuse: it keeps a normalized copy, a map and a
// value for every nested value. A layer that encodes every message anyway
// (the Redis layer writes msgpack) can instead encode it at once: the
// encoding is the copy, made in one allocation, and the flush sends it as
// it is, without encoding it again.
//
// Layers provide this through Register, not as methods of their exported
// types, so that it stays out of their public API. Only the layer itself
// is found (For matches on its concrete type), never a wrapper around it
// that may change what a send does.
package encoded

import "context"

// Layer is a layer's side. A layer that registers one also promises that
// its Send encodes the message before it returns and keeps nothing of the
// content: a caller may reuse the map once Send has returned.
type Layer interface {
	// Encode returns c encoded for a later SendEncoded to channel, or
	// false when it cannot (content it refuses, a message over its size
	// limit): the caller then copies c and sends the copy with the
	// layer's Send, which reports the error as it always does.
	Encode(channel string, c map[string]any) ([]byte, bool)
	// SendEncoded is Send for a message Encode returned for channel. It
	// may be called again with the same message after it failed (a full
	// channel); the message stays the caller's.
	SendEncoded(ctx context.Context, channel string, msg []byte) error
}

var finders []func(any) (Layer, bool)

// Register adds f to the functions For asks. It is meant for init
// functions; f must match only its own layer type.
func Register(f func(any) (Layer, bool)) { finders = append(finders, f) }

// For returns l's Layer, if l's package registered one.
func For(l any) (Layer, bool) {
	for _, f := range finders {
		if el, ok := f(l); ok {
			return el, true
		}
	}
	return nil, false
}
