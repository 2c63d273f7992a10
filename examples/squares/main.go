// Command squares shows the smallest Channels system: a producer and a worker
// exchanging messages over the in-memory layer, in one process.
//
// The producer sends numbers to the "square" channel, each with a reply
// channel of its own; the worker's consumer squares them, replies, and
// broadcasts every result to the "results" group, which the printer below
// has joined.
//
//	go run ./examples/squares
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/worker"
)

func main() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	layer := inmemory.MustNew(inmemory.Config{})

	router := channels.NewRouter()
	router.RouteFunc("square", func(ctx context.Context, m *channels.Message) error {
		v, ok := m.Content.Int("value")
		if !ok {
			return fmt.Errorf("square: no integer value in %v", m.Content)
		}
		// Both sends wait in the outbox until this function returns.
		if err := m.Group("results").Send(ctx, channels.Content{"value": v, "square": v * v}); err != nil {
			return err
		}
		return m.Reply(ctx, channels.Content{"square": v * v})
	})

	w := &worker.Worker{Layer: layer, Consumer: router, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	if err := (channels.Group{Name: "results", Layer: layer}).Add(ctx, "printer"); err != nil {
		log.Fatal(err)
	}
	reply, err := layer.NewChannel(ctx, "squares.client!")
	if err != nil {
		log.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if err := layer.Send(ctx, "square", channels.Content{"value": i, "reply_channel": reply}); err != nil {
			log.Fatal(err)
		}
		_, answer, err := layer.Receive(ctx, reply)
		if err != nil {
			log.Fatal(err)
		}
		_, broadcast, err := layer.Receive(ctx, "printer")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d² = %d (the group saw %d² = %d)\n", i, answer["square"], broadcast["value"], broadcast["square"])
	}
	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	fmt.Printf("worker: %+v\n", w.Stats())
}
