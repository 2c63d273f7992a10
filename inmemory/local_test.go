package inmemory_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
)

// recordingSink is an interface server's side of fanout.Local: it keeps
// what it is handed and knows which channels are live.
type recordingSink struct {
	mu     sync.Mutex
	live   map[string]bool
	single []string   // channels of Deliver calls
	groups [][]string // names of DeliverGroup calls
}

func (s *recordingSink) Deliver(name string, c channels.Content) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.single = append(s.single, name)
	return s.live[name]
}

func (s *recordingSink) DeliverGroup(names []string, c channels.Content) (gone []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups = append(s.groups, slices.Clone(names))
	for _, n := range names {
		if !s.live[n] {
			gone = append(gone, n)
		}
	}
	return gone
}

// Messages for an attached prefix go to the sink, not to a queue; a group
// message reaches the sink once for all its members there; a channel the
// sink reports gone leaves its groups at once; after detach, messages are
// queued again.
func TestAttachLocal(t *testing.T) {
	ctx := context.Background()
	l := inmemory.MustNew(inmemory.Config{})
	const pfx = "websocket.send.SRV!"
	a, b, dead := pfx+"a", pfx+"b", pfx+"dead"
	sink := &recordingSink{live: map[string]bool{a: true, b: true}}
	detach := l.AttachLocal([]string{pfx}, sink)

	if err := l.Send(ctx, a, channels.Content{"text": "hi"}); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{a, b, dead, "other!x"} {
		if err := l.GroupAdd(ctx, "room", ch); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.GroupSend(ctx, "room", channels.Content{"text": "all"}); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	if !slices.Equal(sink.single, []string{a}) {
		t.Errorf("Deliver calls for %v; want [%s]", sink.single, a)
	}
	if len(sink.groups) != 1 || len(sink.groups[0]) != 3 {
		t.Errorf("DeliverGroup calls %v; want one with %s, %s and %s", sink.groups, a, b, dead)
	}
	sink.mu.Unlock()
	members, err := l.GroupChannels(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"other!x", a, b}; !slices.Equal(members, want) {
		t.Errorf("members after the group send: %v; want %v (the gone channel evicted)", members, want)
	}
	st, _ := l.Stats(ctx)
	if st.Messages != 1 || st.Sent != 5 {
		t.Errorf("stats: %d waiting, %d sent; want 1 waiting (other!x) and 5 sent", st.Messages, st.Sent)
	}

	detach()
	if err := l.Send(ctx, a, channels.Content{"text": "queued"}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ch, c, err := l.ReceivePrefix(rctx, pfx)
	if err != nil || ch != a || c.String("text") != "queued" {
		t.Fatalf("after detach: ReceivePrefix = %q %v %v; want the queued message", ch, c, err)
	}
}
