package delay_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/delay"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// TestMeasure prints the delay server's throughput and lateness on each
// store and layer. It runs only with DELAY_MEASURE=1 (it takes about a
// minute and its numbers depend on the machine):
//
//	DELAY_MEASURE=1 go test -run TestMeasure -v ./delay/
//
// For each combination it measures, with 10,000 messages:
//   - store: "asgi.delay" messages taken from the layer and committed per
//     second (the layer pre-filled, nothing due);
//   - send: due messages sent and removed per second (all due at once);
//   - lateness: 10,000 messages due over 5 s, sent through the layer while
//     the server runs; p50/p99 of the server's lateness (due time to the
//     end of the send) and of the end-to-end lateness a consumer sees
//     (arrival minus the producer's send time plus the delay).
func TestMeasure(t *testing.T) {
	if os.Getenv("DELAY_MEASURE") != "1" {
		t.Skip("set DELAY_MEASURE=1 to measure throughput and lateness")
	}
	const n = 10_000
	layers := []struct {
		name string
		new  func(t *testing.T) channels.Layer
	}{
		{"in-memory", func(t *testing.T) channels.Layer { return newLayer(t, inmemory.Config{Capacity: 4 * n}) }},
		{"Redis", func(t *testing.T) channels.Layer {
			url := testenv.RedisURL(t)
			l, err := redislayer.New(t.Context(), redislayer.Config{Hosts: []string{url}, Prefix: testenv.Prefix("delaymeasure"), Capacity: 4 * n, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Flush(context.Background()); l.Close() })
			return l
		}},
	}
	var report []string
	for _, b := range backends {
		for _, ly := range layers {
			t.Run(b.name+"/"+ly.name, func(t *testing.T) {
				storeRate := measureStore(t, ly.new(t), openStore(t, b.config(t)), n)
				sendRate := measureSend(t, ly.new(t), openStore(t, b.config(t)), n)
				srvLate, e2e := measureLateness(t, ly.new(t), openStore(t, b.config(t)), n)
				line := fmt.Sprintf("%-10s %-9s store %6.0f msg/s  send %6.0f msg/s  lateness server p50 %-7s p99 %-7s max %-7s  end-to-end p50 %-7s p99 %s",
					b.name, ly.name, storeRate, sendRate, srvLate.P50, srvLate.P99, srvLate.Max, e2e[0], e2e[1])
				report = append(report, line)
			})
		}
	}
	for _, l := range report {
		t.Log(l)
	}
}

func quietServer(l channels.Layer, s *delay.Store) *delay.Server {
	return &delay.Server{Layer: l, Store: s, Logger: nil}
}

func measureStore(t *testing.T, l channels.Layer, s *delay.Store, n int) float64 {
	for i := range n {
		if err := delay.Send(t.Context(), l, "measure.out", channels.Content{"n": i, "pad": "0123456789abcdef0123456789abcdef"}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	srv := startServer(t, quietServer(l, s))
	start := time.Now()
	for srv.Stats().Stored < uint64(n) {
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("stored only %d of %d", srv.Stats().Stored, n)
		}
		time.Sleep(time.Millisecond)
	}
	return float64(n) / time.Since(start).Seconds()
}

func drain(t *testing.T, l channels.Layer, channel string, n int, each func(c channels.Content, at time.Time)) func() {
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for range n {
			_, c, err := l.Receive(ctx, channel)
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("receive: %v", err)
				}
				return
			}
			if each != nil {
				each(c, time.Now())
			}
		}
	})
	return func() { wg.Wait(); cancel() }
}

func measureSend(t *testing.T, l channels.Layer, s *delay.Store, n int) float64 {
	due := time.Now().Add(2 * time.Second)
	recs := make([]delay.Record, 0, 500)
	for i := range n {
		recs = append(recs, delay.Record{ID: delay.NewID(), Channel: "measure.out", Content: channels.Content{"n": int64(i), "pad": "0123456789abcdef0123456789abcdef"}, Due: due})
		if len(recs) == cap(recs) {
			add(t, s, recs...)
			recs = recs[:0]
		}
	}
	if time.Now().After(due) {
		t.Fatal("filling the store took longer than 2 s; raise the lead time")
	}
	wait := drain(t, l, "measure.out", n, nil)
	srv := startServer(t, quietServer(l, s))
	time.Sleep(time.Until(due))
	start := time.Now()
	for srv.Stats().Sent < uint64(n) {
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("sent only %d of %d", srv.Stats().Sent, n)
		}
		time.Sleep(time.Millisecond)
	}
	rate := float64(n) / time.Since(start).Seconds()
	wait()
	return rate
}

func measureLateness(t *testing.T, l channels.Layer, s *delay.Store, n int) (delay.Lateness, [2]time.Duration) {
	srv := startServer(t, quietServer(l, s))
	var (
		mu       sync.Mutex
		expected = make(map[int64]time.Time, n)
		late     []time.Duration
	)
	wait := drain(t, l, "measure.lateness", n, func(c channels.Content, at time.Time) {
		i, _ := c.Int("n")
		mu.Lock()
		late = append(late, at.Sub(expected[i]))
		mu.Unlock()
	})
	// 10,000 messages at 2,000 per second, each due 1 to 5 s after it is
	// sent.
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / 2000)); d > 0 {
			time.Sleep(d)
		}
		after := time.Second + time.Duration(rand.IntN(4000))*time.Millisecond
		mu.Lock()
		expected[int64(i)] = time.Now().Add(after)
		mu.Unlock()
		if err := delay.Send(t.Context(), l, "measure.lateness", channels.Content{"n": i}, after); err != nil {
			t.Fatal(err)
		}
	}
	wait()
	slices.Sort(late)
	return srv.Stats().Lateness, [2]time.Duration{late[len(late)/2].Round(100 * time.Microsecond), late[len(late)*99/100].Round(100 * time.Microsecond)}
}
