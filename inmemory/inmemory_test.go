package inmemory_test

import (
	"errors"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
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
