package delay_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/delay"
	"github.com/gochannels/channels/inmemory"
)

// Two servers sharing one PostgreSQL table (and one layer) deliver every
// message exactly once: each due message is claimed by one of them.
func TestTwoPostgreSQLServersNeverSendTwice(t *testing.T) {
	sc := pgConfig(t)
	l := newLayer(t, inmemory.Config{Capacity: 10000})
	srvA := startServer(t, &delay.Server{Layer: l, Store: openStore(t, sc), BatchSize: 32})
	srvB := startServer(t, &delay.Server{Layer: l, Store: openStore(t, sc), BatchSize: 32})

	const n = 2000
	for i := range n {
		after := time.Duration(rand.IntN(1000)) * time.Millisecond
		if err := delay.Send(t.Context(), l, "out", channels.Content{"n": i}, after); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[int64]int, n)
	ids := make(map[string]bool, n)
	for len(seen) < n {
		c := receive(t, l, "out", 10*time.Second)
		i, _ := c.Int("n")
		seen[i]++
		if ids[c.String(delay.IDKey)] {
			t.Errorf("ID %s delivered twice", c.String(delay.IDKey))
		}
		ids[c.String(delay.IDKey)] = true
		if seen[i] > 1 {
			t.Errorf("message %d delivered %d times", i, seen[i])
		}
	}
	eventually(t, "both servers to settle", func() bool { return srvA.Stats().Sent+srvB.Stats().Sent == n })
	time.Sleep(100 * time.Millisecond)
	nothingOn(t, l, "out")
	a, b := srvA.Stats(), srvB.Stats()
	t.Logf("server A stored %d, sent %d; server B stored %d, sent %d", a.Stored, a.Sent, b.Stored, b.Sent)
	if a.Stored+b.Stored != n {
		t.Errorf("stored %d + %d, want %d", a.Stored, b.Stored, n)
	}
}

// Stores sharing a PostgreSQL table claim disjoint sets of due records,
// also when they claim at the same moment.
func TestPostgreSQLConcurrentDeliverClaimsEachRecordOnce(t *testing.T) {
	sc := pgConfig(t)
	stores := []*delay.Store{openStore(t, sc), openStore(t, sc), openStore(t, sc)}
	now := time.Now()
	var recs []delay.Record
	for i := range 600 {
		recs = append(recs, delay.Record{ID: seq(i), Channel: "c", Content: channels.Content{}, Due: now})
	}
	add(t, stores[0], recs...)

	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for _, s := range stores {
		wg.Go(func() {
			for {
				n, err := s.Deliver(context.Background(), now, 25, func(_ context.Context, recs []delay.Record) []time.Time {
					mu.Lock()
					for _, r := range recs {
						seen[r.ID]++
					}
					mu.Unlock()
					time.Sleep(time.Millisecond) // hold the claim a little
					return make([]time.Time, len(recs))
				})
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					if p, _ := s.Pending(context.Background()); p == 0 {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != 600 {
		t.Errorf("delivered %d distinct records, want 600", len(seen))
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("record %s delivered %d times", id, k)
		}
	}
}

// A record another store adds to a shared PostgreSQL table wakes a sleeping
// server through LISTEN/NOTIFY: with its safety poll at one hour, the
// server still sends the record on time.
func TestPostgreSQLInsertElsewhereWakesServer(t *testing.T) {
	sc := pgConfig(t)
	l := newLayer(t, inmemory.Config{})
	startServer(t, &delay.Server{Layer: l, Store: openStore(t, sc), PollInterval: time.Hour})
	other := openStore(t, sc)
	time.Sleep(500 * time.Millisecond) // the server is asleep, listening

	add(t, other, delay.Record{ID: "from-elsewhere", Channel: "out", Content: channels.Content{}, Due: time.Now().Add(100 * time.Millisecond)})
	got := receive(t, l, "out", 10*time.Second)
	if got.String(delay.IDKey) != "from-elsewhere" {
		t.Errorf("got %v", got)
	}
}
