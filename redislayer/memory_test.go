package redislayer_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// A layer in use holds little heap of its own: its connections' rings of
// calls under way are 256 slots each, not rueidis's default 1,024 (which
// took the heap of a layer like this one from 1.1 to 2.1 MB).
func TestLayerHeap(t *testing.T) {
	ctx := context.Background()
	url := testenv.RedisURL(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l := newLayer(t, redislayer.Config{Hosts: []string{url}})
	reply, err := l.NewChannel(ctx, "mem!")
	if err != nil {
		t.Fatal(err)
	}
	// An ordinary channel (a fetcher's connection) and a process channel
	// (the receive loop's), and the send batches' connection.
	for range 100 {
		if err := l.Send(ctx, "mem", channels.Content{"text": "x"}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.Receive(ctx, "mem"); err != nil {
			t.Fatal(err)
		}
		if err := l.Send(ctx, reply, channels.Content{"text": "x"}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.Receive(ctx, reply); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("the layer holds %.2f MB of heap", float64(grew)/(1<<20))
	if grew > 1800<<10 {
		t.Errorf("the layer holds %.2f MB of heap, want under 1.8 MB", float64(grew)/(1<<20))
	}
}
