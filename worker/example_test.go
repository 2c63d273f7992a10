package worker_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/worker"
)

func Example() {
	layer := inmemory.MustNew(inmemory.Config{})
	r := channels.NewRouter()
	r.RouteFunc("greetings", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": "hello, " + m.Content.String("name")})
	})

	ctx, stop := context.WithCancel(context.Background())
	w := &worker.Worker{Layer: layer, Consumer: r, Logger: slog.New(slog.DiscardHandler)}
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()

	_ = layer.Send(ctx, "greetings", channels.Content{"name": "gopher", "reply_channel": "client!1"})
	_, reply, _ := layer.Receive(ctx, "client!1")
	fmt.Println(reply["text"])

	stop() // Run returns once the messages in progress have finished
	fmt.Println(<-done, w.Stats().Consumed)
	// Output:
	// hello, gopher
	// <nil> 1
}

func ExampleFilterChannels() {
	names := []string{"yes.1", "no.1", "maybe.2", "yes"}
	got, _ := worker.FilterChannels(names, []string{"yes.*", "maybe.*"}, []string{"maybe.*"})
	fmt.Println(got)
	// Output:
	// [yes.1]
}
