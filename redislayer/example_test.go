package redislayer_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/redislayer"
)

// A layer configured from one URL: hosts, credentials and database as
// usual, layer options as query parameters.
func ExampleParseURL() {
	cfg, err := redislayer.ParseURL("redis://:secret@redis-a:6379/0,redis://:secret@redis-b:6379/0" +
		"?prefix=chat&expiry=30&capacity=200&channel_capacity=http.response!*:10")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(cfg.Hosts), "hosts")
	fmt.Println("prefix", cfg.Prefix, "expiry", cfg.Expiry, "capacity", cfg.Capacity)
	fmt.Println(cfg.ChannelCapacity[0].Pattern, cfg.ChannelCapacity[0].Capacity)
	// Output:
	// 2 hosts
	// prefix chat expiry 30s capacity 200
	// http.response!* 10
}

// Which of three hosts holds a channel, a process's reply channels and a
// group: channels_redis's consistent hash, of the process prefix for
// process-specific channels.
func ExampleConsistentHash() {
	fmt.Println(redislayer.ConsistentHash("http.request", 3))
	fmt.Println(redislayer.ConsistentHash("websocket.send.ABC!", 3)) // every websocket.send.ABC!… channel
	fmt.Println(redislayer.ConsistentHash("chat", 3))
	// Output:
	// 2
	// 2
	// 0
}

// Sending and receiving on an ordinary channel, as an interface server and
// a worker do.
func ExampleNew() {
	ctx := context.Background()
	l, err := redislayer.New(ctx, redislayer.Config{
		Hosts:  []string{"redis://127.0.0.1:6379/0"},
		Prefix: "example:",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	if err := l.Send(ctx, "websocket.receive", channels.Content{"text": "hello"}); errors.Is(err, channels.ErrChannelFull) {
		log.Print("workers are behind; tell the client to slow down")
	} else if err != nil {
		log.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ch, c, err := l.Receive(rctx, "websocket.connect", "websocket.receive", "websocket.disconnect")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ch, c.String("text"))
}

// An interface server's single receive loop: every reply for every one of
// its connections arrives through one ReceivePrefix call at a time.
func ExampleLayer_ReceivePrefix() {
	ctx := context.Background()
	l, err := redislayer.Open(ctx, "redis://127.0.0.1:6379/0?prefix=example:")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	const serverID = "Ab3dE5gH7jK9"
	reply, _ := l.NewChannel(ctx, "websocket.send."+serverID+"!") // one per connection
	_ = l.GroupAdd(ctx, "room-lobby", reply)
	_ = l.GroupSend(ctx, "room-lobby", channels.Content{"text": "welcome"})

	for {
		ch, c, err := l.ReceivePrefix(ctx, "http.response."+serverID+"!", "websocket.send."+serverID+"!")
		if errors.Is(err, redislayer.ErrUnavailable) {
			time.Sleep(100 * time.Millisecond) // Redis is away; the layer reconnects by itself
			continue
		}
		if err != nil {
			return
		}
		fmt.Println("to connection", ch, ":", c.String("text")) // dispatch by ch
	}
}
