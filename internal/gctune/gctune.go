// Package gctune gives the garbage collector a heap floor: while the live
// heap is small, the heap may grow to a fixed size before a collection,
// instead of to twice the live heap.
//
// A Channels process lives on short-lived garbage: every message is a few
// small maps and strings, made, passed on and dropped. Its live heap is
// often a few MiB, and Go's default (GOGC=100) collects whenever the heap
// doubles, down to a 4 MiB goal: at 100 000 WebSocket echoes a second that
// is about 60 collections a second, each scanning every goroutine's stack.
// With a floor of 8 MiB it is about half as many.
//
// The floor is applied by setting the GC percentage after each collection
// from the live heap it left (debug.SetGCPercent), so that the next goal
// is about floor, never below the percentage in effect when Start was
// called (100 unless the program set another). Once the live heap is half
// the floor or more, the percentage is the base one and the floor has no
// effect. A memory limit (GOMEMLIMIT, debug.SetMemoryLimit) still holds.
//
// The floor's heap is for a busy process. One that goes quiet with the
// floor's garbage still in its heap (for 4 to 6 minutes it allocates less
// than a 64th of the floor a second, and at least a quarter of the floor
// is collectable) collects once and returns the free memory to the
// operating system (debug.FreeOSMemory), so that an idle process holds
// about its live heap and not the floor.
package gctune

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// quietCheck is how often a tuner checks for quiet: a process with the
// floor's garbage in its heap that allocates next to nothing for two
// checks collects and returns the free memory (see watchQuiet). Minutes,
// not seconds: growing the heap again costs the next burst of work a page
// fault for every page (8,192 for 32 MiB, 11-15 µs each on a virtual
// machine that hands freed pages back to its host), so a process between
// bursts a minute apart keeps its heap; an idle one gives it back. A
// variable for the tests.
var quietCheck = 2 * time.Minute

// ErrEnvSet reports why Start did nothing: GOGC is set in the environment,
// and that choice wins.
type ErrEnvSet struct{ Value string }

func (e ErrEnvSet) Error() string {
	return "GOGC=" + e.Value + " is set in the environment; the heap floor is not applied"
}

var (
	mu      sync.Mutex
	current *tuner
)

type tuner struct {
	floor   uint64
	base    int
	stopped atomic.Bool
	mu      sync.Mutex // serialises adjust
	percent int        // the percentage last set
	samples []metrics.Sample
	done    chan struct{} // closed by stop: ends watchQuiet
	// returned counts the times a quiet process returned its memory.
	returned atomic.Int64
}

// sentinel is the object whose collection tells the tuner a cycle ended;
// large enough not to share an allocation with other small objects.
type sentinel [64]byte

// Start applies a heap floor of floor bytes until the returned stop is
// called (stop restores the percentage in effect before). It does nothing
// and returns ErrEnvSet when GOGC is set in the environment, and nothing
// when floor is 0. Only one floor is in effect at a time: a second Start
// replaces the first.
func Start(floor uint64) (stop func(), err error) {
	if v := os.Getenv("GOGC"); v != "" {
		return func() {}, ErrEnvSet{Value: v}
	}
	if floor == 0 {
		return func() {}, nil
	}
	mu.Lock()
	defer mu.Unlock()
	var base int
	if current != nil {
		base = current.base
		current.stop()
	} else {
		base = readPercent()
	}
	t := &tuner{
		floor:   floor,
		base:    base,
		percent: base,
		samples: []metrics.Sample{
			{Name: "/gc/heap/live:bytes"},
			{Name: "/gc/scan/stack:bytes"},
			{Name: "/gc/scan/globals:bytes"},
		},
		done: make(chan struct{}),
	}
	current = t
	t.adjust()
	t.arm()
	go t.watchQuiet(quietCheck)
	var once sync.Once
	return func() {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			if current == t {
				current = nil
				t.stop()
			}
		})
	}, nil
}

// stop ends t and restores its base percentage.
func (t *tuner) stop() {
	if !t.stopped.Swap(true) {
		close(t.done)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	debug.SetGCPercent(t.base)
	t.percent = t.base
}

// arm attaches a cleanup to a new sentinel: it runs after the first
// collection that finds the sentinel unreachable, adjusts the percentage
// and arms again.
func (t *tuner) arm() {
	runtime.AddCleanup(new(sentinel), func(t *tuner) {
		if t.stopped.Load() {
			return
		}
		t.adjust()
		t.arm()
	}, t)
}

// watchQuiet returns the floor's garbage to the operating system once the
// process goes quiet: when two checks in a row, an interval apart, saw it
// allocate less than a 64th of the floor a second since the check before, while
// the percentage is above the base (the floor is in effect) and at least
// a quarter of the floor is collectable. It returns once per quiet spell:
// the next return waits for the process to allocate again. (A process
// under load allocates far more: an HTTP request leaves kilobytes.)
func (t *tuner) watchQuiet(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	s := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	read := func() (allocs, heap, live uint64) {
		metrics.Read(s)
		return s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	}
	// Busy: a 64th of the floor a second, whatever the interval.
	busyAt := uint64(float64(t.floor/64) * every.Seconds())
	last, _, _ := read()
	quiet, returned := 0, false
	for {
		select {
		case <-t.done:
			return
		case <-tick.C:
		}
		allocs, heap, live := read()
		busy := allocs-last >= busyAt
		last = allocs
		if busy {
			quiet, returned = 0, false
			continue
		}
		quiet++
		t.mu.Lock()
		raised := t.percent > t.base
		t.mu.Unlock()
		if quiet < 2 || returned || !raised || heap < live+t.floor/4 {
			continue
		}
		debug.FreeOSMemory()
		t.returned.Add(1)
		returned = true
		last, _, _ = read()
	}
}

// adjust sets the percentage from the live heap the last collection left.
func (t *tuner) adjust() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Load() {
		return
	}
	metrics.Read(t.samples)
	var v [3]uint64
	for i, s := range t.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	p := Percent(t.floor, v[0], v[1]+v[2], t.base)
	// A change of less than a tenth is not worth a call.
	if d := p - t.percent; d*10 > t.percent || -d*10 > t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
}

// minHeap is the runtime's smallest heap goal at GOGC=100; it scales with
// the percentage (4 MiB × GOGC/100).
const minHeap = 4 << 20

// Percent is the GC percentage that lets a heap with live bytes live (and
// roots bytes of stacks and globals, which GOGC counts too) grow to floor
// before a collection, at least base. It is at most the percentage whose
// smallest heap goal (4 MiB × GOGC/100) is floor, so a live heap near
// zero has floor as its goal. A negative base (collector off) is
// returned as is.
func Percent(floor, live, roots uint64, base int) int {
	if base < 0 {
		return base
	}
	most := floor * 100 / minHeap
	p := most
	if live+roots > 0 && floor > live {
		p = min(p, (floor-live)*100/(live+roots))
	} else if floor <= live {
		p = 0
	}
	return max(int(min(p, math.MaxInt32)), base)
}

// readPercent returns the GC percentage in effect, -1 when the collector
// is off.
func readPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 100
	}
	if v := s[0].Value.Uint64(); v <= math.MaxInt32 {
		return int(v)
	}
	return -1
}

// CurrentPercent returns the GC percentage in effect (for tests and logs).
func CurrentPercent() int { return readPercent() }
