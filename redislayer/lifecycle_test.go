package redislayer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
	"go.uber.org/goleak"
)

// Close releases blocked receivers with ErrLayerClosed, makes later calls
// fail with it, can be called twice, and leaves no goroutine behind.
func TestCloseReleasesEverything(t *testing.T) {
	url := testenv.RedisURL(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	l, err := redislayer.New(t.Context(), redislayer.Config{Hosts: []string{url}, Prefix: testenv.Prefix("close")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	proc, _ := l.NewChannel(ctx, "close.gw!")
	type result struct {
		what string
		err  error
	}
	results := make(chan result, 4)
	receive := func(what string, f func() error) {
		go func() { results <- result{what, f()} }()
	}
	receive("Receive ordinary", func() error { _, _, err := l.Receive(ctx, "close.work"); return err })
	receive("Receive process-specific", func() error { _, _, err := l.Receive(ctx, proc); return err })
	receive("Receive mixed", func() error { _, _, err := l.Receive(ctx, "close.work2", proc+"x"); return err })
	receive("ReceivePrefix", func() error { _, _, err := l.ReceivePrefix(ctx, "close.gw!"); return err })
	time.Sleep(200 * time.Millisecond) // let them block
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		select {
		case r := <-results:
			if !errors.Is(r.err, channels.ErrLayerClosed) {
				t.Errorf("%s blocked during Close returned %v; want ErrLayerClosed", r.what, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a blocked receive did not return after Close")
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for what, err := range map[string]error{
		"Send":          l.Send(ctx, "x", channels.Content{}),
		"GroupAdd":      l.GroupAdd(ctx, "g", "x"),
		"GroupSend":     l.GroupSend(ctx, "g", channels.Content{}),
		"Flush":         l.Flush(ctx),
		"Receive":       second(l.Receive(ctx, "x")),
		"Poll":          second(l.Poll(ctx, "x")),
		"ReceivePrefix": second(l.ReceivePrefix(ctx, "x!")),
	} {
		if !errors.Is(err, channels.ErrLayerClosed) {
			t.Errorf("%s after Close = %v; want ErrLayerClosed", what, err)
		}
	}
}

func second(_ string, _ channels.Content, err error) error { return err }

// Stats and ChannelStats report what the layer did and what waits.
func TestStats(t *testing.T) {
	url := testenv.RedisURL(t)
	l := newLayer(t, redislayer.Config{Hosts: []string{url}, Capacity: 3})
	ctx := t.Context()
	for i := range 3 {
		if err := l.Send(ctx, "stats.ch", channels.Content{"i": int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Send(ctx, "stats.ch", channels.Content{}); !errors.Is(err, channels.ErrChannelFull) {
		t.Fatalf("fourth send = %v; want ErrChannelFull", err)
	}
	if err := l.Send(ctx, "stats.gw!a", channels.Content{}); err != nil {
		t.Fatal(err)
	}
	if err := l.GroupAdd(ctx, "stats-group", "stats.ch"); err != nil {
		t.Fatal(err)
	}
	if err := l.Send(ctx, "stats.big", channels.Content{"b": make([]byte, 2<<20)}); !errors.Is(err, channels.ErrMessageTooLarge) {
		t.Fatalf("2 MiB send = %v; want ErrMessageTooLarge", err)
	}
	time.Sleep(10 * time.Millisecond)
	cs, err := l.ChannelStats(ctx, "stats.ch")
	if err != nil {
		t.Fatal(err)
	}
	if cs.Length != 3 || cs.Capacity != 3 || cs.Age <= 0 || cs.PerSecond <= 0 {
		t.Errorf("ChannelStats = %+v; want length 3, capacity 3, an age and a rate", cs)
	}
	if _, _, err := l.Receive(ctx, "stats.ch"); err != nil {
		t.Fatal(err)
	}
	st, err := l.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := channels.Stats{Messages: 3, Channels: 2, Groups: 1, Sent: 4, Received: 1, Full: 1, TooLarge: 1}
	if st != want {
		t.Errorf("Stats = %+v; want %+v", st, want)
	}
}
