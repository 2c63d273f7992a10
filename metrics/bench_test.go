package metrics_test

import (
	"context"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/metrics"
)

// BenchmarkConsumer measures what counting and timing adds to each message
// a worker runs (the wrapped consumer does nothing).
func BenchmarkConsumer(b *testing.B) {
	noop := channels.ConsumerFunc(func(context.Context, *channels.Message) error { return nil })
	for _, bc := range []struct {
		name string
		c    channels.Consumer
	}{{"bare", noop}, {"counted", metrics.NewConsumer(noop)}} {
		b.Run(bc.name, func(b *testing.B) {
			m := channels.NewMessage(nil, "websocket.receive", channels.Content{"text": "x"})
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_ = bc.c.Consume(ctx, m)
				}
			})
		})
	}
}

// BenchmarkScrape measures one scrape of a registry holding every
// in-process collector but the Redis layer's.
func BenchmarkScrape(b *testing.B) {
	reg := metrics.NewRegistry()
	c := metrics.NewConsumer(channels.ConsumerFunc(func(context.Context, *channels.Message) error { return nil }))
	reg.MustRegister(c)
	for _, ch := range []string{"http.request", "websocket.connect", "websocket.receive", "websocket.disconnect"} {
		_ = c.Consume(context.Background(), channels.NewMessage(nil, ch, channels.Content{}))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
