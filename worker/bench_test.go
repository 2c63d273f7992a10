package worker_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/worker"
)

// One message through the whole worker path: layer → worker → router →
// consumer → outbox flush → reply channel, received by the caller.
func BenchmarkRoundTrip(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	l := inmemory.MustNew(inmemory.Config{})
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": m.Content.String("text")})
	}, channels.Path(`^/echo/(?P<room>[^/]+)/$`))
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error { return nil })
	w := &worker.Worker{Layer: l, Consumer: r, Logger: slog.New(slog.DiscardHandler)}
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	reply := "websocket.send.bench!abcdefghijkl"
	msg := channels.Content{"reply_channel": reply, "path": "/echo/lobby/", "text": "hello", "order": int64(1)}
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Send(ctx, "websocket.receive", msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := l.Receive(ctx, reply); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cancel()
	<-done
}
