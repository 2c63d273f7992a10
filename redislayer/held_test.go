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

// Messages received with ReceiveHeld and not acknowledged go back to their
// channel once their hold ends, and are received again with the same IDs
// (by another layer too); acknowledged ones are gone; expired ones are not
// delivered.
func TestReceiveHeld(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	prefix := testenv.Prefix("held")
	cfg := redislayer.Config{Hosts: []string{url}, Prefix: prefix, Expiry: 2 * time.Second}
	a, b := newLayer(t, cfg), newLayer(t, cfg)
	ctx := t.Context()
	for i := range 5 {
		if err := a.Send(ctx, "held.in", channels.Content{"n": int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	const hold = 300 * time.Millisecond
	ids, msgs, _, err := a.ReceiveHeld(ctx, "held.in", 3, hold)
	if err != nil || len(msgs) != 3 || len(ids) != 3 {
		t.Fatalf("ReceiveHeld = %v, %v, %v; want 3 messages", ids, msgs, err)
	}
	// Not acknowledged: a crash. The other two are taken and acknowledged.
	ids2, msgs2, ack, err := b.ReceiveHeld(ctx, "held.in", 10, hold)
	if err != nil || len(msgs2) != 2 {
		t.Fatalf("second ReceiveHeld = %v, %v; want the 2 others", msgs2, err)
	}
	if err := ack(ctx); err != nil {
		t.Fatal(err)
	}
	if _, c, _ := b.Poll(ctx, "held.in"); c != nil {
		t.Fatalf("Poll found %v while every message is held or acknowledged", c)
	}
	// After the hold, the three unacknowledged ones come back to whoever
	// receives next, with the same IDs; the acknowledged two do not.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	time.Sleep(hold)
	ids3, msgs3, ack3, err := b.ReceiveHeld(rctx, "held.in", 10, hold)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	slices.Sort(ids3)
	if !slices.Equal(ids, ids3) || len(msgs3) != 3 {
		t.Fatalf("after the hold got IDs %v (%d messages); want the unacknowledged %v", ids3, len(msgs3), ids)
	}
	for _, id := range ids2 {
		if slices.Contains(ids3, id) {
			t.Fatalf("acknowledged message %s came back", id)
		}
	}
	if err := ack3(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.Counters().Returned; n != 3 {
		t.Errorf("Counters().Returned = %d, want 3", n)
	}
	// Held past their expiry: they go back, but are never delivered.
	if err := a.Send(ctx, "held.in", channels.Content{"late": true}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := a.ReceiveHeld(ctx, "held.in", 1, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond)
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	if _, msgs, _, err := b.ReceiveHeld(sctx, "held.in", 1, time.Second); err == nil {
		t.Fatalf("an expired message was delivered: %v", msgs)
	}
	// Process-specific channels cannot be held.
	if _, _, _, err := a.ReceiveHeld(ctx, "held.gw!abc", 1, time.Second); err == nil {
		t.Fatal("ReceiveHeld on a process-specific channel succeeded")
	}
}
