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
	g := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(g)
	stop()
	if goal := g[0].Value.Uint64(); goal < 48*mib || goal > 80*mib {
		t.Errorf("heap goal %d MiB with a 64 MiB floor; want about 64", goal/mib)
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
