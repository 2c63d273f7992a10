package redislayer_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// A group message for several channels of one process is one message in
// Redis; ReceivePrefixMulti hands it over once for the channels that have
// it next, and every channel's messages keep their order.
func TestReceivePrefixMulti(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newLayer(t, redislayer.Config{Hosts: []string{testenv.RedisURL(t)}})
	a, b, c := "ws.send!a", "ws.send!b", "ws.send!c"
	for _, ch := range []string{a, b, c} {
		if err := l.GroupAdd(ctx, "g", ch); err != nil {
			t.Fatal(err)
		}
	}
	send := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	send(l.Send(ctx, a, channels.Content{"text": "a1"}))
	send(l.GroupSend(ctx, "g", channels.Content{"text": "g1"}))
	send(l.Send(ctx, a, channels.Content{"text": "a2"}))
	send(l.GroupSend(ctx, "g", channels.Content{"text": "g2"}))

	got := map[string][]string{}
	multis := 0
	for n := 0; n < 8; {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		name, names, m, err := l.ReceivePrefixMulti(rctx, "ws.send!")
		cancel()
		if err != nil {
			t.Fatalf("after %d deliveries: %v (got %v)", n, err, got)
		}
		if names == nil {
			names = []string{name}
		} else {
			if name != "" || len(names) < 2 {
				t.Fatalf("multi delivery %q %v", name, names)
			}
			multis++
		}
		for _, ch := range names {
			got[ch] = append(got[ch], m.String("text"))
		}
		n += len(names)
	}
	want := map[string][]string{a: {"a1", "g1", "a2", "g2"}, b: {"g1", "g2"}, c: {"g1", "g2"}}
	for ch, w := range want {
		if !slices.Equal(got[ch], w) {
			t.Errorf("%s got %v, want %v", ch, got[ch], w)
		}
	}
	if multis == 0 {
		t.Error("no group message came once for several channels")
	}
}
