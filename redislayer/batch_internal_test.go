package redislayer

import (
	"context"
	"sync"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
)

// BenchmarkSendBurst releases 64 Sends to one channel at once, as a
// network poll releases the frames of many connections, and reports how
// many messages a send batch held on average (msgs/batch): 64 when they
// all share one round trip.
func BenchmarkSendBurst(b *testing.B) {
	const senders = 64
	ctx := context.Background()
	l, err := New(ctx, Config{Hosts: []string{testenv.RedisURL(b)}, Prefix: testenv.Prefix("burst"), Capacity: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = l.Flush(context.Background())
		_ = l.Close()
	})
	msg := channels.Content{"text": "a frame of a WebSocket echo, about sixty-four bytes long......"}
	send := func() {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range senders {
			wg.Go(func() {
				<-start
				if err := l.Send(ctx, "burst", msg); err != nil {
					b.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	send() // connections opened
	b.ReportAllocs()
	before := l.st.batches.Load()
	for b.Loop() {
		send()
	}
	b.ReportMetric(float64(b.N*senders)/float64(l.st.batches.Load()-before), "msgs/batch")
}
