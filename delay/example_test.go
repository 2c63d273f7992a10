package delay_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/delay"
	"github.com/gochannels/channels/inmemory"
)

// A delay server on the in-memory layer with a SQLite store, as runserver
// runs it, and a message scheduled for 50 ms later.
func ExampleServer() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, _ := os.MkdirTemp("", "delay-example")
	defer os.RemoveAll(dir)

	layer := inmemory.MustNew(inmemory.Config{})
	store, err := delay.Open(ctx, "sqlite://"+filepath.Join(dir, "delay.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	srv := &delay.Server{Layer: layer, Store: store, Logger: slog.New(slog.DiscardHandler)}
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()

	start := time.Now()
	err = delay.Send(ctx, layer, "reminders", channels.Content{"text": "time's up", "raw": []byte{1, 2}}, 50*time.Millisecond)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, c, _ := layer.Receive(ctx, "reminders")
	fmt.Println(c.String("text"), c.Bytes("raw"), time.Since(start) >= 50*time.Millisecond)
	fmt.Println("has an ID:", c.String(delay.IDKey) != "")

	cancel()
	fmt.Println("Run:", <-done)
	// Output:
	// time's up [1 2] true
	// has an ID: true
	// Run: <nil>
}

// SendConfirmed returns once a delay server has committed the message; the
// ID it returns is the one the message is delivered with.
func ExampleSendConfirmed() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	layer := inmemory.MustNew(inmemory.Config{})
	store, _ := delay.Open(ctx, ":memory:") // development only: not durable
	defer store.Close()
	go (&delay.Server{Layer: layer, Store: store, Logger: slog.New(slog.DiscardHandler)}).Run(ctx)

	id, err := delay.SendConfirmed(ctx, layer, "jobs", channels.Content{"job": "cleanup"}, 200*time.Millisecond)
	if err != nil {
		fmt.Println(err)
		return
	}
	n, _ := store.Pending(ctx)
	fmt.Println("stored:", n)
	_, c, _ := layer.Receive(ctx, "jobs")
	fmt.Println(c.String("job"), c.String(delay.IDKey) == id)
	// Output:
	// stored: 1
	// cleanup true
}
