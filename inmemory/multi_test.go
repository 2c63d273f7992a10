package inmemory_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/internal/fanout"
)

// receiveAll takes everything waiting under the prefixes with
// ReceivePrefixMulti, returning what each channel got, in order, and the
// sizes of the multi deliveries.
func receiveAll(t *testing.T, l *inmemory.Layer, prefixes ...string) (map[string][]string, []int) {
	t.Helper()
	got := map[string][]string{}
	var multis []int
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		name, names, c, err := l.ReceivePrefixMulti(ctx, prefixes...)
		cancel()
		if err != nil {
			return got, multis
		}
		if names == nil {
			names = []string{name}
		} else {
			if name != "" || len(names) < 2 {
				t.Fatalf("multi delivery %q %v", name, names)
			}
			multis = append(multis, len(names))
		}
		for _, n := range names {
			got[n] = append(got[n], c.String("text"))
		}
	}
}

// A group message comes once for the members under a process prefix that
// have it first in their channel, and each channel's messages keep their
// order: a member with an older message gets it first.
func TestReceivePrefixMultiOrderPerChannel(t *testing.T) {
	var _ fanout.Receiver = (*inmemory.Layer)(nil)
	ctx := context.Background()
	l := inmemory.MustNew(inmemory.Config{})
	defer l.Close()
	a, b, c, other := "ws.send!a", "ws.send!b", "ws.send!c", "ws.other!d"
	for _, ch := range []string{a, b, c, other, "plain"} {
		if err := l.GroupAdd(ctx, "g", ch); err != nil {
			t.Fatal(err)
		}
	}
	must(t, l.Send(ctx, a, channels.Content{"text": "a1"}))
	must(t, l.GroupSend(ctx, "g", channels.Content{"text": "g1"}))
	must(t, l.Send(ctx, a, channels.Content{"text": "a2"}))
	must(t, l.GroupSend(ctx, "g", channels.Content{"text": "g2"}))

	got, multis := receiveAll(t, l, "ws.send!")
	want := map[string][]string{a: {"a1", "g1", "a2", "g2"}, b: {"g1", "g2"}, c: {"g1", "g2"}}
	for ch, w := range want {
		if !slices.Equal(got[ch], w) {
			t.Errorf("%s got %v, want %v", ch, got[ch], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("channels outside the prefix received: %v", got)
	}
	if len(multis) == 0 {
		t.Errorf("no group message came once for several members")
	}
	// The other prefix and the ordinary channel each got both, alone.
	other2, m2 := receiveAll(t, l, "ws.other!")
	if !slices.Equal(other2[other], []string{"g1", "g2"}) || len(m2) != 0 {
		t.Errorf("other prefix got %v (multi %v)", other2, m2)
	}
	for _, w := range []string{"g1", "g2"} {
		_, m, err := l.Receive(ctx, "plain")
		if err != nil || m.String("text") != w {
			t.Fatalf("plain got %v %v, want %s", m, err, w)
		}
	}
	st, _ := l.Stats(ctx)
	if st.Sent != st.Received || st.Messages != 0 {
		t.Errorf("stats %+v: every queued copy must count as received once", st)
	}
}

// Every member still has its own capacity: a full member is skipped and
// counted, the others get the message once together.
func TestReceivePrefixMultiCapacity(t *testing.T) {
	ctx := context.Background()
	l := inmemory.MustNew(inmemory.Config{ProcessCapacity: 1})
	defer l.Close()
	members := []string{"ws!a", "ws!b", "ws!c"}
	for _, ch := range members {
		must(t, l.GroupAdd(ctx, "g", ch))
	}
	must(t, l.Send(ctx, "ws!a", channels.Content{"text": "direct"}))
	must(t, l.GroupSend(ctx, "g", channels.Content{"text": "g"}))
	st, _ := l.Stats(ctx)
	if st.GroupSkipped != 1 {
		t.Fatalf("GroupSkipped = %d, want 1", st.GroupSkipped)
	}
	got, multis := receiveAll(t, l, "ws!")
	if !slices.Equal(got["ws!a"], []string{"direct"}) || !slices.Equal(got["ws!b"], []string{"g"}) || !slices.Equal(got["ws!c"], []string{"g"}) {
		t.Errorf("got %v", got)
	}
	if !slices.Equal(multis, []int{2}) {
		t.Errorf("multi deliveries %v, want one to 2 members", multis)
	}
}

// A plain ReceivePrefix still gets one copy per member, each its own.
func TestReceivePrefixCopiesGroupMessage(t *testing.T) {
	ctx := context.Background()
	l := inmemory.MustNew(inmemory.Config{})
	defer l.Close()
	must(t, l.GroupAdd(ctx, "g", "ws!a"))
	must(t, l.GroupAdd(ctx, "g", "ws!b"))
	must(t, l.GroupSend(ctx, "g", channels.Content{"text": "g"}))
	_, m1, err := l.ReceivePrefix(ctx, "ws!")
	must(t, err)
	m1["text"] = "changed"
	_, m2, err := l.ReceivePrefix(ctx, "ws!")
	must(t, err)
	if m2.String("text") != "g" {
		t.Fatalf("second member got %v", m2)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
