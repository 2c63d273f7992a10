package redislayer_test

import (
	"context"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// A process that was idle while Redis restarted (its pooled connections
// all died meanwhile, unnoticed) loses none of its first calls afterwards:
// each kind of send succeeds at the first attempt and the message arrives.
func TestFirstSendAfterIdleOutage(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	l := newLayer(t, redislayer.Config{Hosts: []string{srv.URL}, Timeout: time.Second})
	ctx := t.Context()
	proc, err := l.NewChannel(ctx, "idle.gw!")
	if err != nil {
		t.Fatal(err)
	}
	// Every path once, so that the layer has connections to lose.
	roundTrip := func(round int) {
		t.Helper()
		if err := l.Send(ctx, "idle.work", channels.Content{"n": int64(round)}); err != nil {
			t.Fatalf("round %d: first send to an ordinary channel: %v", round, err)
		}
		if err := l.Send(ctx, proc, channels.Content{"n": int64(round)}); err != nil {
			t.Fatalf("round %d: first send to a process-specific channel: %v", round, err)
		}
		if err := l.GroupAdd(ctx, "idle.group", proc); err != nil {
			t.Fatalf("round %d: first group add: %v", round, err)
		}
		if err := l.GroupSend(ctx, "idle.group", channels.Content{"g": int64(round)}); err != nil {
			t.Fatalf("round %d: first group send: %v", round, err)
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, c, err := l.Receive(rctx, "idle.work"); err != nil || c["n"] != int64(round) {
			t.Fatalf("round %d: receive = %v, %v; want the message sent", round, c, err)
		}
		for i := 0; i < 2; i++ {
			if _, c, err := l.Receive(rctx, proc); err != nil {
				t.Fatalf("round %d: receive %d on %s = %v, %v", round, i, proc, c, err)
			}
		}
	}
	roundTrip(0)
	for round := 1; round <= 2; round++ {
		srv.Restart(t) // killed, and started empty on the same port
		// Idle past the point where the client notices by itself.
		time.Sleep(1500 * time.Millisecond)
		roundTrip(round)
	}
}

// Redis restarted empty is noticed by every layer on it: each calls its
// OnDataLoss functions once and counts it, soon after Redis answers again.
// Flush, which empties the prefix on purpose, is not a loss.
func TestDataLossNoticed(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	prefix := testenv.Prefix("loss")
	cfg := redislayer.Config{Hosts: []string{srv.URL}, Prefix: prefix, Timeout: time.Second}
	a, b := newLayer(t, cfg), newLayer(t, cfg)
	ctx := t.Context()
	type event struct {
		layer string
		at    time.Time
	}
	events := make(chan event, 10)
	stopA := a.OnDataLoss(func() { events <- event{"a", time.Now()} })
	defer stopA()
	stopB := b.OnDataLoss(func() { events <- event{"b", time.Now()} })
	defer stopB()

	if err := a.GroupAdd(ctx, "loss.group", "loss.member"); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-events:
		t.Fatalf("layer %s reported a data loss after Flush", e.layer)
	case <-time.After(time.Second):
	}

	srv.Restart(t)
	answered := time.Now()
	got := map[string]time.Duration{}
	for len(got) < 2 {
		select {
		case e := <-events:
			if _, dup := got[e.layer]; dup {
				t.Fatalf("layer %s reported one loss twice", e.layer)
			}
			got[e.layer] = e.at.Sub(answered)
		case <-time.After(5 * time.Second):
			t.Fatalf("data loss not reported within 5 s of Redis answering again (reported: %v)", got)
		}
	}
	t.Logf("loss noticed after Redis answered: %v", got)
	select {
	case e := <-events:
		t.Fatalf("layer %s reported a second loss", e.layer)
	case <-time.After(600 * time.Millisecond):
	}
	for name, l := range map[string]*redislayer.Layer{"a": a, "b": b} {
		if n := l.Counters().DataLosses; n != 1 {
			t.Errorf("layer %s: Counters().DataLosses = %d, want 1", name, n)
		}
	}
	// Both agree on the new epoch: no further loss is seen by either.
	stopA()
	c := newLayer(t, cfg)
	time.Sleep(600 * time.Millisecond)
	if n := c.Counters().DataLosses + b.Counters().DataLosses; n != 1 {
		t.Errorf("a layer found another loss after the first: %d", n)
	}
}
