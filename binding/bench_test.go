package binding_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/inmemory"
	"github.com/jackc/pgx/v5"
)

// BenchmarkRelay measures changes from commit to delivery: writers insert
// rows (one transaction each) while a relay sends each change to a group
// with one member, whose channel the benchmark drains. It reports changes
// per second and the p50/p99 time from the end of the INSERT to the
// message's arrival on the channel.
func BenchmarkRelay(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchRelay(b, sqliteEnv(b), 1) })
	b.Run("postgres", func(b *testing.B) { benchRelay(b, pgEnv(b), 4) })
}

func benchRelay(b *testing.B, e *env, writers int) {
	e.createItems()
	items, err := binding.New(binding.Binding[Item]{
		Model: "board.item", Stream: "items", Table: "items", Fields: []string{"title"},
		GroupNames: func(Item) []string { return []string{"all"} },
	})
	if err != nil {
		b.Fatal(err)
	}
	layer := inmemory.MustNew(inmemory.Config{Capacity: 1 << 20, ProcessCapacity: 1 << 20})
	defer layer.Close()
	ctx, cancel := context.WithCancel(context.Background())
	_ = layer.GroupAdd(ctx, "all", "sink!1")
	relay := &binding.Relay{DB: e.db, Layer: layer, Bindings: []binding.Registration{items}}
	if err := binding.Install(ctx, e.db, items); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	defer func() { cancel(); <-done }()

	insert := make([]func() (int64, error), writers)
	for w := range writers {
		if e.pg {
			c, err := pgx.Connect(ctx, e.url)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close(context.Background())
			insert[w] = func() (id int64, err error) {
				err = c.QueryRow(ctx, "INSERT INTO items (title) VALUES ('x') RETURNING id").Scan(&id)
				return id, err
			}
		} else {
			insert[w] = func() (id int64, err error) {
				err = e.rawSQL.QueryRowContext(ctx, "INSERT INTO items (title) VALUES ('x') RETURNING id").Scan(&id)
				return id, err
			}
		}
	}
	var mu sync.Mutex
	committed := make(map[int64]time.Time, b.N)
	received := make(map[int64]time.Time, b.N)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		n := b.N / writers
		if w == 0 {
			n += b.N % writers
		}
		wg.Go(func() {
			for range n {
				id, err := insert[w]()
				if err != nil {
					b.Error(err)
					return
				}
				now := time.Now()
				mu.Lock()
				committed[id] = now
				mu.Unlock()
				e.db.Notify()
			}
		})
	}
	for range b.N {
		_, c, err := layer.Receive(ctx, "sink!1")
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		var m message
		if err := json.Unmarshal([]byte(c.String("text")), &m); err != nil {
			b.Fatal(err)
		}
		received[int64(m.Payload.PK.(float64))] = now
	}
	elapsed := time.Since(start)
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "changes/s")
	lat := make([]time.Duration, 0, b.N)
	for id, at := range received {
		lat = append(lat, max(0, at.Sub(committed[id])))
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkRelayBacklog measures how fast a relay drains a backlog: b.N
// changes committed at once (one INSERT … SELECT) before it starts, sent
// to a group with one member.
func BenchmarkRelayBacklog(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchBacklog(b, sqliteEnv(b)) })
	b.Run("postgres", func(b *testing.B) { benchBacklog(b, pgEnv(b)) })
}

func benchBacklog(b *testing.B, e *env) {
	e.createItems()
	items, err := binding.New(binding.Binding[Item]{
		Model: "board.item", Stream: "items", Table: "items", Fields: []string{"title"},
		GroupNames: func(Item) []string { return []string{"all"} },
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := binding.Install(ctx, e.db, items); err != nil {
		b.Fatal(err)
	}
	if e.pg {
		e.raw("INSERT INTO items (title) SELECT 'item ' || x FROM generate_series(1, ?::int) x", b.N)
	} else {
		e.raw("INSERT INTO items (title) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT 'item ' || x FROM c", b.N)
	}
	layer := inmemory.MustNew(inmemory.Config{Capacity: 1 << 20, ProcessCapacity: 1 << 20})
	defer layer.Close()
	_ = layer.GroupAdd(ctx, "all", "sink!1")
	relay := &binding.Relay{DB: e.db, Layer: layer, Bindings: []binding.Registration{items}}
	b.ResetTimer()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for range b.N {
		if _, _, err := layer.Receive(ctx, "sink!1"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "changes/s")
}
