package delay_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/delay"
	"github.com/gochannels/channels/internal/testenv"
)

// BenchmarkStoreRoundTrip measures the store alone: one transaction adding
// a batch of 64 records, then one claiming, "sending" and removing them.
//
//	go test -run XXX -bench StoreRoundTrip ./delay/
func BenchmarkStoreRoundTrip(b *testing.B) {
	for _, kind := range []string{"SQLite", "PostgreSQL"} {
		b.Run(kind, func(b *testing.B) {
			var cfg delay.StoreConfig
			switch kind {
			case "SQLite":
				cfg = delay.StoreConfig{URL: "sqlite://" + filepath.Join(b.TempDir(), "bench.db")}
			default:
				url := testenv.DatabaseURL(b)
				prefix := tablePrefix()
				b.Cleanup(func() { dropPGTables(b, url, prefix) })
				cfg = delay.StoreConfig{URL: url, TablePrefix: prefix}
			}
			s, err := delay.OpenStore(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const batch = 64
			content := channels.Content{"text": "hello", "bytes": []byte("0123456789abcdef0123456789abcdef")}
			recs := make([]delay.Record, batch)
			ctx := context.Background()
			for b.Loop() {
				now := time.Now()
				for i := range recs {
					recs[i] = delay.Record{ID: delay.NewID(), Channel: "bench.out", Content: content, Due: now}
				}
				if _, err := s.Add(ctx, recs...); err != nil {
					b.Fatal(err)
				}
				n, err := s.Deliver(ctx, now, batch, func(_ context.Context, due []delay.Record) []time.Time {
					return make([]time.Time, len(due))
				})
				if err != nil || n != batch {
					b.Fatalf("Deliver = %d, %v", n, err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
