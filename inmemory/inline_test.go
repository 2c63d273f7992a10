package inmemory_test

import (
	"context"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/internal/inline"
)

// offerRecorder is a worker's side of an attachment that takes offers
// while accept is set.
type offerRecorder struct {
	accept bool
	got    []int64
	offers int
}

func (r *offerRecorder) Offer(channel string, c channels.Content) bool {
	r.offers++
	if !r.accept {
		return false
	}
	n, _ := c.Int("n")
	r.got = append(r.got, n)
	return true
}

// The layer offers a send to the attached worker only when nothing sent
// to the channel earlier can still be ahead of it: not while the channel
// holds messages, not while a message the worker received is on its way
// to its lanes (received, not yet placed), never again once some other
// receive took from the channel, and not after the worker detached.
func TestSendInlineOffersOnlyWhenNothingIsAhead(t *testing.T) {
	ctx := context.Background()
	l := inmemory.MustNew(inmemory.Config{})
	il, ok := inline.For(l)
	if !ok {
		t.Fatal("the in-memory layer has no inline.Layer")
	}
	r := &offerRecorder{accept: true}
	att := il.AttachRunner([]string{"a", "b"}, r)
	if att == nil {
		t.Fatal("AttachRunner refused the first worker")
	}
	if again := il.AttachRunner([]string{"b"}, &offerRecorder{}); again != nil {
		t.Fatal("a second worker was attached for a channel that has one")
	}
	if only := il.AttachRunner([]string{"c.x!y"}, &offerRecorder{}); only != nil {
		t.Fatal("a worker was attached for nothing but a process-specific channel")
	}
	send := func(ch string, n int64) {
		t.Helper()
		if err := il.SendInline(ctx, ch, channels.Content{"n": n}); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(want int64) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, c, err := att.Receive(rctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := c.Int("n"); n != want {
			t.Fatalf("received n=%d; want %d", n, want)
		}
	}
	offers := func(want int) {
		t.Helper()
		if r.offers != want {
			t.Fatalf("%d offers; want %d", r.offers, want)
		}
	}

	send("a", 1) // nothing ahead: taken by the worker
	offers(1)
	r.accept = false
	send("a", 2) // offered, refused: queued
	offers(2)
	r.accept = true
	send("a", 3) // 2 is queued ahead of it
	offers(2)
	recv(2) // on its way to the worker
	recv(3) // on its way too; the channel is empty
	send("a", 4)
	offers(2)
	att.Placed()
	send("a", 5) // 3 is still on its way
	offers(2)
	att.Placed()
	recv(4)
	recv(5)
	att.Placed()
	att.Placed()
	send("a", 6) // nothing ahead again
	offers(3)
	if want := []int64{1, 6}; len(r.got) != 2 || r.got[0] != want[0] || r.got[1] != want[1] {
		t.Fatalf("the worker took %v; want %v", r.got, want)
	}
	s, _ := l.Stats(ctx)
	// 6 sent, 2 of them taken at the send; 4 received from the channel.
	if s.Sent != 6 || s.Received != 6 || s.Messages != 0 {
		t.Fatalf("stats %+v; want 6 sent, 6 received, none waiting", s)
	}

	// Another receive takes from b: the layer cannot know where that
	// message goes, so the worker's sends are queued from now on.
	r.accept = false
	send("b", 7)
	offers(4)
	if _, c, err := l.Receive(ctx, "b"); err != nil || c["n"] != int64(7) {
		t.Fatalf("plain receive: %v, %v", c, err)
	}
	r.accept = true
	send("b", 8)
	offers(4)
	send("a", 9)
	offers(4)
	recv(9)
	att.Placed()

	att.Detach()
	r.accept, r.offers = true, 0
	if att = il.AttachRunner([]string{"a"}, r); att == nil {
		t.Fatal("a worker could not attach after the last one detached")
	}
	send("a", 10)
	offers(1)
	att.Detach()
	send("a", 11)
	offers(1)
	recv(11)
}
