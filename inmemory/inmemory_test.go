package inmemory_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/internal/owned"
	"github.com/gochannels/channels/layertest"
)

func TestConformance(t *testing.T) {
	var clocks layertest.Clocks
	layertest.Run(t, func(t *testing.T, s layertest.Settings) channels.Layer {
		clock := layertest.NewClock()
		l := inmemory.MustNew(inmemory.Config{
			Expiry:          s.Expiry,
			GroupExpiry:     s.GroupExpiry,
			Capacity:        s.Capacity,
			ChannelCapacity: s.ChannelCapacity,
			Now:             clock.Now,
		})
		clocks.Bind(l, clock)
		return l
	}, layertest.Options{Advance: clocks.Advance})
}

// The suite again on the real clock, so that expiry is also seen to work
// with time.Now.
func TestConformanceRealClock(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for real expiry")
	}
	layertest.Run(t, func(t *testing.T, s layertest.Settings) channels.Layer {
		return inmemory.MustNew(inmemory.Config{
			Expiry:          s.Expiry,
			GroupExpiry:     s.GroupExpiry,
			Capacity:        s.Capacity,
			ChannelCapacity: s.ChannelCapacity,
		})
	}, layertest.Options{})
}

// Process-specific channels have their own default capacity; rules still
// win over it.
func TestProcessCapacity(t *testing.T) {
	ctx := t.Context()
	l := inmemory.MustNew(inmemory.Config{
		Capacity:        2,
		ProcessCapacity: 4,
		ChannelCapacity: []channels.CapacityRule{{Pattern: "ruled!*", Capacity: 1}},
	})
	for name, want := range map[string]int{"normal": 2, "websocket.send.gw!abc": 4, "ruled!x": 1, "single?reader": 2} {
		for i := range want {
			if err := l.Send(ctx, name, channels.Content{}); err != nil {
				t.Fatalf("%s: send %d: %v", name, i+1, err)
			}
		}
		if err := l.Send(ctx, name, channels.Content{}); !errors.Is(err, channels.ErrChannelFull) {
			t.Fatalf("%s: send %d = %v; want ErrChannelFull", name, want+1, err)
		}
		if cs, _ := l.ChannelStats(ctx, name); cs.Capacity != want {
			t.Fatalf("%s: ChannelStats.Capacity = %d; want %d", name, cs.Capacity, want)
		}
	}
	if d := inmemory.MustNew(inmemory.Config{}); d != nil {
		cs, _ := d.ChannelStats(ctx, "websocket.send.gw!abc")
		if cs.Capacity != inmemory.DefaultProcessCapacity {
			t.Fatalf("default process capacity %d; want %d", cs.Capacity, inmemory.DefaultProcessCapacity)
		}
	}
}

// SendOwned queues content in normal form as it is (the receiver gets the
// sender's very bytes), and normalizes anything else as Send does.
func TestSendOwned(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	defer l.Close()
	ctx := t.Context()
	body := []byte("owned")
	if err := owned.Send(ctx, l, "owned", channels.Content{"bytes": body}); err != nil {
		t.Fatal(err)
	}
	_, c, err := l.Receive(ctx, "owned")
	if err != nil {
		t.Fatal(err)
	}
	if got := c["bytes"].([]byte); &got[0] != &body[0] {
		t.Fatal("SendOwned copied content that was already in normal form")
	}

	if err := owned.Send(ctx, l, "owned", channels.Content{"n": 7, "list": []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	_, c, err = l.Receive(ctx, "owned")
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := c["n"].(int64); !ok || n != 7 {
		t.Fatalf("n = %#v, want int64(7)", c["n"])
	}
	if list, ok := c["list"].([]any); !ok || len(list) != 1 || list[0] != "a" {
		t.Fatalf("list = %#v, want []any{\"a\"}", c["list"])
	}

	// The size limit holds for owned sends too.
	small := inmemory.MustNew(inmemory.Config{MaxMessageSize: 16})
	defer small.Close()
	err = owned.Send(ctx, small, "owned", channels.Content{"text": "far more than sixteen bytes"})
	if !errors.Is(err, channels.ErrMessageTooLarge) {
		t.Fatalf("oversized owned send: %v, want ErrMessageTooLarge", err)
	}
}

// countingLayer wraps a layer by embedding it and overrides Send.
type countingLayer struct {
	*inmemory.Layer
	sends int
}

func (c *countingLayer) Send(ctx context.Context, channel string, m channels.Content) error {
	c.sends++
	return c.Layer.Send(ctx, channel, m)
}

// A wrapper that embeds the layer and overrides Send is not bypassed by
// owned.Send through the promoted SendOwned method.
func TestSendOwnedRespectsWrappers(t *testing.T) {
	w := &countingLayer{Layer: inmemory.MustNew(inmemory.Config{})}
	defer w.Close()
	if err := owned.Send(t.Context(), w, "owned", channels.Content{"text": "x"}); err != nil {
		t.Fatal(err)
	}
	if w.sends != 1 {
		t.Fatalf("the wrapper's Send ran %d times, want 1", w.sends)
	}
}
