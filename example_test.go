package channels_test

import (
	"context"
	"fmt"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
)

func ExampleRouter() {
	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		fmt.Println("joining room", m.PathValue("room"))
		return m.Reply(ctx, channels.Content{"accept": true})
	}, channels.Path(`^/chat/(?P<room>[^/]+)/$`))

	api := channels.NewRouter()
	api.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
		fmt.Println("API version", m.PathValue("version"), "resource", m.PathValue("resource"))
		return nil
	}, channels.Path(`(?P<resource>[a-z]+)/$`))
	r.Include(api, channels.Path(`^/api/v(?P<version>[0-9]+)/`))

	fmt.Println(r.Channels())
	ctx := context.Background()
	_ = r.Consume(ctx, channels.NewMessage(nil, "websocket.connect", channels.Content{"path": "/chat/lobby/"}))
	_ = r.Consume(ctx, channels.NewMessage(nil, "http.request", channels.Content{"path": "/api/v2/users/"}))
	// Output:
	// [http.request websocket.connect]
	// joining room lobby
	// API version 2 resource users
}

func ExampleChannel_Send() {
	ctx := context.Background()
	layer := inmemory.MustNew(inmemory.Config{})

	// Outside a consumer, Send goes to the layer at once.
	out := channels.Channel{Name: "thumbnails", Layer: layer}
	if err := out.Send(ctx, channels.Content{"id": 42, "data": []byte{0x89, 'P', 'N', 'G'}}); err != nil {
		fmt.Println(err)
	}
	ch, c, _ := layer.Receive(ctx, "thumbnails")
	fmt.Printf("%s: id %d (%T), %d bytes\n", ch, c["id"], c["id"], len(c.Bytes("data")))
	// Output:
	// thumbnails: id 42 (int64), 4 bytes
}

func ExampleGroup_Send() {
	ctx := context.Background()
	layer := inmemory.MustNew(inmemory.Config{})
	room := channels.Group{Name: "room-lobby", Layer: layer}
	_ = room.Add(ctx, "websocket.send!alice")
	_ = room.Add(ctx, "websocket.send!bob")
	_ = room.Discard(ctx, "websocket.send!bob")

	_ = room.Send(ctx, channels.Content{"text": "hello, room"})
	_, c, _ := layer.Receive(ctx, "websocket.send!alice")
	fmt.Println("alice got:", c.String("text"))
	_, c, _ = channels.Poll(ctx, layer, "websocket.send!bob")
	fmt.Println("bob got:", c)
	// Output:
	// alice got: hello, room
	// bob got: map[]
}

func ExampleConsumerFunc() {
	ctx := context.Background()
	layer := inmemory.MustNew(inmemory.Config{})
	square := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		v, _ := m.Content.Int("value")
		// Held in the outbox until the consumer returns.
		return channels.Channel{Name: "result"}.Send(ctx, channels.Content{"value": v * v})
	})

	var runner channels.Runner // what a worker does for every message
	_ = runner.Run(ctx, square, channels.NewMessage(layer, "square", channels.Content{"value": 33}))
	_, c, _ := layer.Receive(ctx, "result")
	fmt.Println(c["value"])
	// Output:
	// 1089
}

func ExampleCloseError() {
	ctx := context.Background()
	layer := inmemory.MustNew(inmemory.Config{})
	kick := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		if m.Content.String("text") == "/quit" {
			_ = m.Reply(ctx, channels.Content{"text": "goodbye"})
			return &channels.CloseError{Code: 4000, Reason: "client quit"}
		}
		return nil
	})
	var runner channels.Runner
	_ = runner.Run(ctx, kick, channels.NewMessage(layer, "websocket.receive", channels.Content{
		"reply_channel": "websocket.send!abc", "text": "/quit",
	}))
	for range 2 {
		_, c, _ := layer.Receive(ctx, "websocket.send!abc")
		fmt.Println(c)
	}
	// Output:
	// map[text:goodbye]
	// map[close:4000]
}
