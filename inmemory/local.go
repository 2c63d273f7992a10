package inmemory

import (
	"maps"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/fanout"
	"github.com/gochannels/channels/internal/naming"
)

// sinkMap maps process prefixes to the sinks attached for them.
type sinkMap map[string]fanout.Sink

// AttachLocal implements fanout.Local: messages sent to a channel under
// one of prefixes go straight to s (see fanout.Local). It is how an
// interface server in the same process takes its replies without a
// receive loop in between.
//
// A message delivered this way never waits in the layer, so it cannot
// expire unread there; a channel that the sink reports gone (its
// connection closed) is removed from every group at once instead.
func (l *Layer) AttachLocal(prefixes []string, s fanout.Sink) (detach func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := sinkMap{}
	if old := l.sinks.Load(); old != nil {
		m = maps.Clone(*old)
	}
	for _, p := range prefixes {
		m[p] = s
	}
	l.sinks.Store(&m)
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		old := l.sinks.Load()
		if old == nil {
			return
		}
		m := maps.Clone(*old)
		for _, p := range prefixes {
			if m[p] == s {
				delete(m, p)
			}
		}
		l.sinks.Store(&m)
	}
}

// sinkFor returns the sink attached for channel's process prefix, if any.
func (l *Layer) sinkFor(channel string) fanout.Sink {
	m := l.sinks.Load()
	if m == nil || len(*m) == 0 {
		return nil
	}
	p := naming.ProcessPrefix(channel)
	if p == "" {
		return nil
	}
	return (*m)[p]
}

// sendLocal hands c to s for channel: a send to a channel of an attached
// interface server. c is the layer's own copy.
func (l *Layer) sendLocal(s fanout.Sink, channel string, c channels.Content) {
	l.localSent.Add(1)
	if !s.Deliver(channel, c) {
		l.forget([]string{channel})
	}
}

// forget removes channels that can never be received on again from every
// group.
func (l *Layer) forget(names []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ch := range names {
		for g := range l.memberOf[ch] {
			l.removeMember(g, ch)
		}
	}
}

// localBatch collects, during a group send, the members that go to each
// attached sink.
type localBatch struct {
	sinks []fanout.Sink
	names [][]string
}

func (b *localBatch) add(s fanout.Sink, ch string) {
	for i, x := range b.sinks {
		if x == s {
			b.names[i] = append(b.names[i], ch)
			return
		}
	}
	b.sinks = append(b.sinks, s)
	b.names = append(b.names, []string{ch})
}

// deliverBatch hands c, shared, to every sink of the batch, outside l.mu.
func (l *Layer) deliverBatch(b *localBatch, c channels.Content) {
	for i, s := range b.sinks {
		l.localSent.Add(uint64(len(b.names[i])))
		if gone := s.DeliverGroup(b.names[i], c); len(gone) > 0 {
			l.forget(gone)
		}
	}
}

var _ fanout.Local = (*Layer)(nil)
