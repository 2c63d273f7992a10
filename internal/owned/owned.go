// Package owned is the fast path by which the module's interface servers,
// the Runner's outbox and httpconsumer hand a message they built to a layer
// without the deep copy Send makes.
//
// It does not import package channels (which uses it), so it is generic in
// the content type: in this module C is always channels.Content.
package owned

import (
	"context"
	"reflect"
)

// Sender is implemented by layers that can queue a message without the deep
// copy Send makes. SendOwned is Send for a caller that hands the message
// over: once the call has succeeded, the caller does not read, change or keep
// c or anything in it (on an error, c is the caller's again). Content that is
// not in normal form (see channels.Content) is copied as Send would.
type Sender[C any] interface {
	SendOwned(ctx context.Context, channel string, c C) error
	// OwnedSenderLayer returns the layer itself. Send uses SendOwned only
	// on that very layer, so that a type that wraps a layer by embedding
	// it, and overrides Send, is never bypassed through the embedded
	// layer's promoted SendOwned.
	OwnedSenderLayer() any
}

// Layer is the part of channels.Layer that Send needs.
type Layer[C any] interface {
	Send(ctx context.Context, channel string, c C) error
}

// Send sends c with l's SendOwned when l is itself a Sender (not a type
// embedding one), else with l.Send. The caller gives c up as Sender
// describes.
func Send[C any](ctx context.Context, l Layer[C], channel string, c C) error {
	if o, ok := l.(Sender[C]); ok && sameLayer(o.OwnedSenderLayer(), l) {
		return o.SendOwned(ctx, channel, c)
	}
	return l.Send(ctx, channel, c)
}

// sameLayer reports whether a and b are the same layer value, without
// panicking on layer types that cannot be compared.
func sameLayer(a, b any) bool {
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta != nil && ta.Comparable() && a == b
}
