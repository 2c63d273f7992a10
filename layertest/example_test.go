package layertest_test

import (
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/layertest"
)

// A layer's test file runs the suite with a factory that applies the suite's
// settings; a fake clock makes the expiry cases instant.
func ExampleRun() {
	_ = func(t *testing.T) { // func TestConformance(t *testing.T)
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
}
