package inmemory_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
)

func Example() {
	ctx := context.Background()
	l := inmemory.MustNew(inmemory.Config{Capacity: 2})

	_ = l.Send(ctx, "jobs", channels.Content{"n": 1})
	_ = l.Send(ctx, "jobs", channels.Content{"n": 2})
	err := l.Send(ctx, "jobs", channels.Content{"n": 3})
	fmt.Println("third send:", errors.Is(err, channels.ErrChannelFull))

	for range 2 {
		ch, c, _ := l.Receive(ctx, "jobs", "other")
		fmt.Println(ch, c["n"])
	}
	// Output:
	// third send: true
	// jobs 1
	// jobs 2
}

// An interface server creates reply channels under a prefix of its own and
// receives all of them with one call.
func ExampleLayer_ReceivePrefix() {
	ctx := context.Background()
	l := inmemory.MustNew(inmemory.Config{})
	a, _ := l.NewChannel(ctx, "websocket.send.server1!")
	b, _ := l.NewChannel(ctx, "websocket.send.server1!")
	_ = l.Send(ctx, a, channels.Content{"text": "to a"})
	_ = l.Send(ctx, b, channels.Content{"text": "to b"})

	for range 2 {
		ch, c, _ := l.ReceivePrefix(ctx, "websocket.send.server1!")
		fmt.Println(ch == a, ch == b, c["text"])
	}
	// Output:
	// true false to a
	// false true to b
}

func ExampleLayer_GroupSend() {
	ctx := context.Background()
	l := inmemory.MustNew(inmemory.Config{})
	_ = l.GroupAdd(ctx, "room", "alice")
	_ = l.GroupAdd(ctx, "room", "bob")
	_ = l.GroupSend(ctx, "room", channels.Content{"text": "hi all"})

	members, _ := l.GroupChannels(ctx, "room")
	for _, m := range members {
		_, c, _ := l.Receive(ctx, m)
		fmt.Println(m, c["text"])
	}
	// Output:
	// alice hi all
	// bob hi all
}
