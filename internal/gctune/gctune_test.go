package gctune

import (
	"errors"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

const mib = 1 << 20

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		floor, live, roots uint64
		base, want         int
	}{
		{32 * mib, 2 * mib, 0, 100, 800},       // capped: the smallest goal is 4 MiB × 8 = 32 MiB
		{64 * mib, 6 * mib, 2 * mib, 100, 725}, // 6 + 8 × 7.25 = 64 MiB
		{32 * mib, 20 * mib, 0, 100, 100},      // 60% is below the base
		{32 * mib, 40 * mib, 0, 100, 100},      // above the floor
		{32 * mib, 2 * mib, 0, 3000, 3000},     // a higher base stays
		{32 * mib, 0, 0, 100, 800},
		{2 * mib, 0, 0, 100, 100},      // a floor below Go's own smallest goal
		{32 * mib, 2 * mib, 0, -1, -1}, // collector off
	} {
		if got := Percent(c.floor, c.live, c.roots, c.base); got != c.want {
			t.Errorf("Percent(%d, %d, %d, %d) = %d; want %d", c.floor, c.live, c.roots, c.base, got, c.want)
		}
	}
}

var sink []byte

// churn allocates n bytes of short-lived garbage in small objects, as a
// process handling messages does, and returns how many collections ran.
func churn(n int) uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	for range n / 256 {
		sink = make([]byte, 256)
	}
	sink = nil
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// waitPercent waits for the percentage the floor sets after a collection
// (the tuner adjusts it from a cleanup, on another goroutine).
func waitPercent(t *testing.T, ok func(int) bool) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := CurrentPercent()
		if ok(p) || time.Now().After(deadline) {
			return p
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// With a small live heap the floor lets the heap grow before collecting:
// the same garbage takes a fraction of the collections, and stop puts the
// percentage back.
func TestFloorCutsCollections(t *testing.T) {
	base := CurrentPercent()
	runtime.GC()
	without := churn(256 * mib)
	stop, err := Start(64 * mib)
	if err != nil {
		t.Fatal(err)
	}
	if p := waitPercent(t, func(p int) bool { return p >= 800 }); p < 800 {
		stop()
		t.Fatalf("GC percentage %d with a 64 MiB floor and a live heap of a few MiB; want 800 or more", p)
	}
	with := churn(256 * mib)
	// The tuner sets the percentage after a collection, from a cleanup:
	// on a busy machine the goal of the collection just ended can come
	// from the last one's percentage and a live heap that the garbage
	// being made swelled, until the tuner runs. It must settle near the
	// floor.
	g := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	var goal uint64
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		metrics.Read(g)
		goal = g[0].Value.Uint64()
		if goal >= 48*mib && goal <= 80*mib || time.Now().After(deadline) {
			break
		}
	}
	stop()
	if goal < 48*mib || goal > 80*mib {
		t.Errorf("heap goal %d MiB with a 64 MiB floor, 2 s after the garbage; want about 64", goal/mib)
	}
	t.Logf("collections for 256 MiB of garbage: %d with Go's default, %d with a 64 MiB floor", without, with)
	// 256 MiB with a goal of about 64 MiB is four or five collections;
	// Go's default goal here is 4 to 10 MiB.
	if with > 8 {
		t.Errorf("%d collections with the floor (%d without); want at most 8", with, without)
	}
	if p := CurrentPercent(); p != base {
		t.Errorf("GC percentage %d after stop; want %d back", p, base)
	}
	// Stopped: collections no longer change the percentage.
	runtime.GC()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if p := CurrentPercent(); p != base {
		t.Errorf("GC percentage %d after collections once stopped; want %d", p, base)
	}
}

var live [][]byte

// A live heap of half the floor or more keeps the base percentage: the
// floor never makes a large heap grow further.
func TestFloorYieldsToLargeHeap(t *testing.T) {
	base := CurrentPercent()
	stop, err := Start(32 * mib)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for range 24 {
		live = append(live, make([]byte, mib))
	}
	defer func() { live = nil }()
	if p := waitPercent(t, func(p int) bool { return p == base }); p != base {
		t.Errorf("GC percentage %d with 24 MiB live and a 32 MiB floor; want the base %d", p, base)
	}
	live = nil
	if p := waitPercent(t, func(p int) bool { return p > base }); p <= base {
		t.Errorf("GC percentage %d once the live heap is small again; want above %d", p, base)
	}
}

// GOGC set in the environment wins: Start leaves the collector alone.
func TestGOGCInEnvironmentWins(t *testing.T) {
	t.Setenv("GOGC", "150")
	before := CurrentPercent()
	stop, err := Start(64 * mib)
	defer stop()
	var env ErrEnvSet
	if !errors.As(err, &env) || env.Value != "150" {
		t.Fatalf("Start with GOGC=150 set: %v; want ErrEnvSet", err)
	}
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if p := CurrentPercent(); p != before {
		t.Errorf("GC percentage %d; want %d untouched", p, before)
	}
}

// A process that goes quiet with the floor's garbage in its heap collects
// once and returns the free memory to the operating system; a process
// that keeps allocating does not, even when it has not collected for a
// while.
func TestQuietReturnsMemory(t *testing.T) {
	defer func(d time.Duration) { quietCheck = d }(quietCheck)
	quietCheck = 50 * time.Millisecond
	stop, err := Start(256 * mib)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if p := waitPercent(t, func(p int) bool { return p >= 1000 }); p < 1000 {
		t.Fatalf("GC percentage %d with a 256 MiB floor; want 1000 or more", p)
	}
	mu.Lock()
	tu := current
	mu.Unlock()
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	// Busy: garbage made steadily, a few MiB per check, under a floor so
	// high that no collection runs meanwhile. The process is busy, not
	// quiet, and its garbage is left to the collector.
	busyUntil := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(busyUntil) {
		churn(2 * mib)
		time.Sleep(5 * time.Millisecond)
	}
	if n := tu.returned.Load(); n != 0 {
		t.Fatalf("a busy process returned its memory %d times; want 0", n)
	}
	// Quiet: garbage, then nothing.
	runtime.GC()
	keep := make([][]byte, 0, 96*4)
	for range 96 * 4 {
		keep = append(keep, make([]byte, 256<<10))
	}
	keep = nil
	metrics.Read(s)
	before, releasedBefore := s[0].Value.Uint64(), s[2].Value.Uint64()
	if before < 64*mib {
		t.Fatalf("heap objects %d MiB after 96 MiB of garbage under a 256 MiB floor; want the garbage uncollected", before/mib)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tu.returned.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := tu.returned.Load(); n != 1 {
		t.Fatalf("a quiet process returned its memory %d times within 5 s; want once", n)
	}
	metrics.Read(s)
	heap, live, released := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	if heap > live+32*mib || released < releasedBefore+48*mib {
		t.Errorf("after the return: heap objects %d MiB (live %d MiB), released %d → %d MiB; want the garbage collected and returned",
			heap/mib, live/mib, releasedBefore/mib, released/mib)
	}
	// Once per quiet spell.
	time.Sleep(6 * quietCheck)
	if n := tu.returned.Load(); n != 1 {
		t.Errorf("returned %d times in one quiet spell; want once", n)
	}
}
