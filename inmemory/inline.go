package inmemory

import (
	"context"
	"sync/atomic"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/inline"
	"github.com/gochannels/channels/internal/naming"
)

// attachment is a worker attached to the layer (see AttachRunner).
type attachment struct {
	l     *Layer
	r     inline.Runner
	names []string
	// transit counts the messages the worker's receives took from an
	// attached channel and it has not yet placed (see inline.Attached).
	transit atomic.Int64
	// plain is set, under l.mu, once another receive took a message from
	// one of the worker's channels: the layer cannot know where that
	// message is, so sends are queued from then on.
	plain bool
}

// inlineLayer is the layer's inline.Layer (see package inline), a type of
// its own so that its methods stay out of Layer's API.
type inlineLayer Layer

func init() {
	inline.Register(func(l channels.Layer) (inline.Layer, bool) {
		x, ok := l.(*Layer) // exactly this type: a wrapper is not bypassed
		return (*inlineLayer)(x), ok
	})
}

// AttachRunner implements inline.Layer: sends made with SendInline to one
// of names may go straight to r (see package inline). Channel names of
// one process (with "!") are left out: their messages go to an attached
// interface server or wait for it. It returns nil when another worker is
// attached for one of names, or none is left.
func (il *inlineLayer) AttachRunner(names []string, r inline.Runner) inline.Attached {
	l := (*Layer)(il)
	a := &attachment{l: l, r: r}
	for _, n := range names {
		if naming.ProcessPrefix(n) == "" {
			a.names = append(a.names, n)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(a.names) == 0 || l.closed {
		return nil
	}
	for _, n := range a.names {
		if l.runners[n] != nil {
			return nil
		}
	}
	if l.runners == nil {
		l.runners = make(map[string]*attachment)
	}
	for _, n := range a.names {
		l.runners[n] = a
	}
	l.hasRunners.Store(true)
	return a
}

// Receive implements inline.Attached.
func (a *attachment) Receive(ctx context.Context, names ...string) (string, channels.Content, error) {
	if len(names) == 0 {
		return "", nil, nil
	}
	if err := a.l.checkNames(names); err != nil {
		return "", nil, err
	}
	ch, _, c, err := a.l.wait(ctx, names, false, false, a)
	return ch, c, err
}

// Placed implements inline.Attached.
func (a *attachment) Placed() { a.transit.Add(-1) }

// Detach implements inline.Attached.
func (a *attachment) Detach() {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range a.names {
		if l.runners[n] == a {
			delete(l.runners, n)
		}
	}
	l.hasRunners.Store(len(l.runners) > 0)
}

// tookFrom notes that a receive by a (nil: not by an attached worker)
// took a message from channel. l.mu is held.
func (l *Layer) tookFrom(channel string, a *attachment) {
	ra := l.runners[channel]
	switch {
	case ra == nil:
	case ra == a:
		a.transit.Add(1)
	default:
		ra.plain = true
	}
}

// SendInline implements inline.Layer. It is SendOwned, except that when a
// worker is attached for channel and the layer holds nothing sent to the
// channel before, nor has the worker a message from it on the way, the
// worker is offered c first and may run it in this goroutine.
func (il *inlineLayer) SendInline(ctx context.Context, channel string, c channels.Content) error {
	l := (*Layer)(il)
	nc, size, fits, err := l.prepare(channel, c, true)
	if err != nil {
		return err
	}
	if fits && l.hasRunners.Load() && l.sinkFor(channel) == nil && l.offer(channel, nc) {
		return nil
	}
	return l.enqueue(channel, nc, size, fits)
}

// offer offers c to the worker attached for channel when nothing sent to
// the channel before can be ahead of it, and reports whether the worker
// took it.
func (l *Layer) offer(channel string, c channels.Content) bool {
	l.mu.Lock()
	a := l.runners[channel]
	free := a != nil && !l.closed && !a.plain && a.transit.Load() == 0 && l.queues[channel].len() == 0
	l.mu.Unlock()
	if !free || !a.r.Offer(channel, c) {
		return false
	}
	l.inlineRun.Add(1)
	return true
}

var _ inline.Layer = (*inlineLayer)(nil)
