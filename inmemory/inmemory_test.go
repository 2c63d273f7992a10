package inmemory_test

import (
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
