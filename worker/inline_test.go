package worker_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/internal/inline"
	"github.com/gochannels/channels/worker"
)

// sendInline sends c the way the gateway sends websocket.receive on an
// in-process layer: the worker may run it before the call returns.
func sendInline(t *testing.T, l *inmemory.Layer, ch string, c channels.Content) {
	t.Helper()
	il, ok := inline.For(l)
	if !ok {
		t.Fatal("the in-memory layer has no inline.Layer")
	}
	if err := il.SendInline(context.Background(), ch, c); err != nil {
		t.Error(err)
	}
}

// probeRouter returns a router with a "probe" route, which counts the
// probes it ran (see waitInline).
func probeRouter() (*channels.Router, *atomic.Int64) {
	var probes atomic.Int64
	r := channels.NewRouter()
	r.RouteFunc("probe", func(ctx context.Context, m *channels.Message) error {
		probes.Add(1)
		return nil
	})
	return r, &probes
}

// waitInline sends probes until one runs in the sending goroutine, which
// it does once the worker has attached to the layer.
func waitInline(t *testing.T, l *inmemory.Layer, ran *atomic.Int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		before := ran.Load()
		sendInline(t, l, "probe", channels.Content{})
		if ran.Load() > before {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no send ran in the sender's goroutine: the worker did not attach to the in-memory layer")
}

// On the in-memory layer an idle worker runs a message sent with
// SendInline in the sender's goroutine: the consumer has run, and its
// reply is sent, when the send returns. The layer counts such a message
// as sent and received.
func TestInlineRunsInSendersGoroutine(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	var ran atomic.Int64
	r, probes := probeRouter()
	r.RouteFunc("work", func(ctx context.Context, m *channels.Message) error {
		ran.Add(1)
		return channels.Channel{Name: "out"}.Send(ctx, channels.Content{"n": m.Content["n"]})
	})
	start(t, &worker.Worker{Layer: l, Consumer: r})
	waitInline(t, l, probes)
	before, _ := l.Stats(context.Background())
	for i := range 100 {
		sendInline(t, l, "work", channels.Content{"n": int64(i)})
		if got := ran.Load(); got != int64(i+1) {
			t.Fatalf("send %d returned with %d messages consumed; want the consumer to have run in the send", i, got)
		}
		if n, ok := receive(t, l, "out").Int("n"); !ok || n != int64(i) {
			t.Fatalf("reply %d: n = %d", i, n)
		}
	}
	after, _ := l.Stats(context.Background())
	// 100 work messages and 100 replies sent; 100 work and 100 replies received.
	if sent, recv := after.Sent-before.Sent, after.Received-before.Received; sent != 200 || recv != 200 {
		t.Errorf("layer counted %d sent and %d received; want 200 and 200", sent, recv)
	}
}

// One sender per connection, as the gateway's read loops send: more
// connections than the worker's concurrency, and consumers of random
// length, so that some messages run in their senders' goroutines and some
// wait in the layer for the worker's. Every connection's messages still
// run one at a time in order, and no more than Concurrency run at once.
func TestInlineKeepsOrderAndConcurrency(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{Capacity: 10000})
	const conc = 3
	rec := newLaneRecorder(func() {
		if rand.IntN(3) == 0 {
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		}
	})
	r, probes := probeRouter()
	r.RouteFunc("websocket.receive", rec.consume)
	start(t, &worker.Worker{Layer: l, Consumer: r, Concurrency: conc})
	waitInline(t, l, probes)

	const conns, per = 12, 150
	var inline, queued atomic.Int64
	var wg sync.WaitGroup
	for c := range conns {
		reply := "websocket.send!c" + string(rune('a'+c))
		wg.Go(func() {
			for i := range per {
				sendInline(t, l, "websocket.receive", channels.Content{"reply_channel": reply, "order": int64(i)})
				if rec.last(reply, int64(i)) {
					inline.Add(1)
				} else {
					queued.Add(1)
				}
				time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond) // the layer drains now and then
			}
		})
	}
	wg.Wait()
	rec.check(t, conns, per)
	if m := rec.most.Load(); m > conc {
		t.Errorf("%d consumers ran at once; Concurrency is %d", m, conc)
	}
	t.Logf("%d messages ran in their senders' goroutines, %d waited in the layer", inline.Load(), queued.Load())
	if inline.Load() == 0 || queued.Load() == 0 {
		t.Errorf("%d messages ran in their senders' goroutines and %d waited in the layer; the test needs both", inline.Load(), queued.Load())
	}
}

// Stopping waits for a consumer running in a sender's goroutine; a send
// after that is queued in the layer, not run.
func TestInlineStopWaitsAndThenQueues(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	started := make(chan struct{})
	var finished, lateRan atomic.Bool
	r, probes := probeRouter()
	r.RouteFunc("slow", func(ctx context.Context, m *channels.Message) error {
		close(started)
		time.Sleep(200 * time.Millisecond)
		finished.Store(true)
		return nil
	})
	r.RouteFunc("late", func(ctx context.Context, m *channels.Message) error {
		lateRan.Store(true)
		return nil
	})
	stop := start(t, &worker.Worker{Layer: l, Consumer: r})
	waitInline(t, l, probes)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		sendInline(t, l, "slow", channels.Content{})
	}()
	<-started
	stop()
	if !finished.Load() {
		t.Fatal("Run returned before the consumer running in a sender's goroutine finished")
	}
	<-sent
	sendInline(t, l, "late", channels.Content{})
	if lateRan.Load() {
		t.Fatal("a send after the worker stopped ran its consumer")
	}
	if c := receive(t, l, "late"); c == nil {
		t.Fatal("the send after the worker stopped was not queued")
	}
}
