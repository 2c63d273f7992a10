package redislayer

import (
	"strconv"
	"testing"
	"time"
)

// A full rate table sweeps for idle channels at most once per rateSweep:
// sends to ever new channels (fresh reply channels) then cost a map
// lookup, not a scan of the whole table each.
func TestRateTableSweepsAtMostOncePerInterval(t *testing.T) {
	var rt rateTable
	now := time.Unix(1000, 0)
	for i := range rateChannels {
		rt.add("busy."+strconv.Itoa(i), 1, now)
	}
	if got := rt.n.Load(); got != rateChannels {
		t.Fatalf("tracked %d channels, want %d", got, rateChannels)
	}

	// Full of channels in use: the first new channel sweeps and finds
	// nothing to forget; it is not tracked.
	first := now.Add(time.Millisecond)
	rt.add("new.0", 1, first)
	if got := rt.lastSweep.Load(); got != first.UnixNano() {
		t.Fatalf("lastSweep = %d, want the first new channel's time %d", got, first.UnixNano())
	}
	if rt.rate("new.0", first) != 0 || rt.n.Load() != rateChannels {
		t.Fatalf("a channel beyond the limit was tracked")
	}
	// More new channels within rateSweep do not sweep again.
	for i := 1; i <= 1000; i++ {
		rt.add("new."+strconv.Itoa(i), 1, first.Add(time.Duration(i)*time.Microsecond))
	}
	if got := rt.lastSweep.Load(); got != first.UnixNano() {
		t.Fatalf("swept again %v after the last sweep", time.Duration(got-first.UnixNano()))
	}

	// Once the old channels are idle for two windows, the next sweep
	// forgets them and the new channel is tracked.
	later := now.Add(2*rateWindow + 2*rateSweep)
	rt.add("new.late", 5, later)
	if got := rt.n.Load(); got != 1 {
		t.Fatalf("after the sweep %d channels are tracked, want 1", got)
	}
	if _, ok := rt.m.Load("new.late"); !ok {
		t.Fatal("the channel after the sweep is not tracked")
	}
}

// BenchmarkRateTableFullNewChannel is a send to a channel never seen
// before while the table is full of busy channels (a worker answering
// HTTP requests: every reply channel is new).
func BenchmarkRateTableFullNewChannel(b *testing.B) {
	var rt rateTable
	now := time.Now()
	for i := range rateChannels {
		rt.add("busy."+strconv.Itoa(i), 1, now)
	}
	names := make([]string, 1024)
	for i := range names {
		names[i] = "reply." + strconv.Itoa(i)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		rt.add(names[i%len(names)], 1, now)
	}
}
