package inmemory

import (
	"testing"

	"github.com/gochannels/channels"
)

// A queue emptied after a burst lets its array go: the queue of a closed
// connection's reply channel stays in the layer for a whole expiry, and
// must not keep hundreds of entries' worth of memory meanwhile.
func TestEmptiedQueueReleasesItsArray(t *testing.T) {
	l := MustNew(Config{Capacity: 1000})
	defer l.Close()
	ctx := t.Context()
	for i := range 300 {
		if err := l.Send(ctx, "burst!x", channels.Content{"i": int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 300 {
		if _, c, err := l.Receive(ctx, "burst!x"); err != nil || c == nil {
			t.Fatalf("receive: %v %v", c, err)
		}
	}
	l.mu.Lock()
	q := l.queues["burst!x"]
	l.mu.Unlock()
	if q == nil {
		t.Fatal("the queue is gone before its expiry")
	}
	if c := cap(q.items); c > keepEmptyCap {
		t.Fatalf("the emptied queue keeps an array of %d entries", c)
	}
}
