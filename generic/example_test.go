package generic_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/inmemory"
)

// consume runs one message the way a worker does and prints the replies.
func consume(l channels.Layer, c channels.Consumer, reply, channel string, content channels.Content) {
	ctx := context.Background()
	content["reply_channel"] = reply
	_ = (&channels.Runner{}).Run(ctx, c, channels.NewMessage(l, channel, content))
	for {
		_, out, _ := channels.Poll(ctx, l, reply)
		if out == nil {
			return
		}
		fmt.Println(out)
	}
}

func ExampleWebSocket() {
	shout := &generic.WebSocket{
		Receive: func(ctx context.Context, c *generic.Conn) error {
			text, _ := c.Text()
			if text == "bye" {
				return c.Close(ctx, 4000)
			}
			return c.Send(ctx, strings.ToUpper(text))
		},
	}
	r := channels.NewRouter()
	r.Handle(shout, channels.Path(`^/shout/$`))

	l := inmemory.MustNew(inmemory.Config{})
	defer l.Close()
	reply, _ := l.NewChannel(context.Background(), "websocket.send.example!")
	consume(l, r, reply, "websocket.connect", channels.Content{"path": "/shout/"})
	consume(l, r, reply, "websocket.receive", channels.Content{"path": "/shout/", "text": "hello"})
	consume(l, r, reply, "websocket.receive", channels.Content{"path": "/shout/", "text": "bye"})
	// Output:
	// map[accept:true]
	// map[text:HELLO]
	// map[close:4000]
}

func ExampleJSONWebSocket() {
	type sum struct {
		A, B int
	}
	adder := &generic.JSONWebSocket[sum]{
		Receive: func(ctx context.Context, c *generic.Conn, s sum) error {
			return c.SendJSON(ctx, map[string]int{"sum": s.A + s.B})
		},
	}
	l := inmemory.MustNew(inmemory.Config{})
	defer l.Close()
	reply, _ := l.NewChannel(context.Background(), "websocket.send.example!")
	consume(l, adder, reply, "websocket.receive", channels.Content{"path": "/", "text": `{"A": 2, "B": 3}`})
	consume(l, adder, reply, "websocket.receive", channels.Content{"path": "/", "text": `not JSON`})
	// Output:
	// map[text:{"sum":5}]
	// map[close:1007]
}
