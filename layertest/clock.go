package layertest

import (
	"sync"
	"time"

	"github.com/gochannels/channels"
)

// Clock is a fake clock for layers with an injectable clock.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock that starts at the current time.
func NewClock() *Clock { return &Clock{now: time.Now()} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Clocks keeps one fake clock per layer, for a factory that makes a new layer
// per case: give each layer a clock with Bind and pass Clocks.Advance as
// Options.Advance.
type Clocks struct {
	mu sync.Mutex
	m  map[channels.Layer]*Clock
}

// Bind records that l's time is kept by c.
func (cs *Clocks) Bind(l channels.Layer, c *Clock) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = make(map[channels.Layer]*Clock)
	}
	cs.m[l] = c
}

// Advance moves l's clock forward by d, or sleeps for d if l has no clock.
func (cs *Clocks) Advance(l channels.Layer, d time.Duration) {
	cs.mu.Lock()
	c := cs.m[l]
	cs.mu.Unlock()
	if c == nil {
		time.Sleep(d)
		return
	}
	c.Advance(d)
}
