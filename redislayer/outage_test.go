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
