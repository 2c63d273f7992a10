package generic_test

import (
	"context"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/inmemory"
)

// BenchmarkDemultiplexerReceive measures one multiplexed frame: envelope
// decoded, payload handed to a JSONWebSocket stream that decodes it and
// answers through its multiplexer, reply flushed.
func BenchmarkDemultiplexerReceive(b *testing.B) {
	type in struct {
		Text string `json:"text"`
	}
	d := &generic.Demultiplexer{Consumers: map[string]channels.Consumer{
		"chat": &generic.JSONWebSocket[in]{Receive: func(ctx context.Context, c *generic.Conn, v in) error {
			return generic.MultiplexerFrom(ctx).Send(ctx, v)
		}},
	}}
	l := inmemory.MustNew(inmemory.Config{})
	defer l.Close()
	ctx := context.Background()
	reply, _ := l.NewChannel(ctx, "websocket.send.bench!")
	var r channels.Runner
	for b.Loop() {
		m := channels.NewMessage(l, "websocket.receive", channels.Content{"reply_channel": reply, "path": "/", "text": `{"stream":"chat","payload":{"text":"hello"}}`})
		if err := r.Run(ctx, d, m); err != nil {
			b.Fatal(err)
		}
		if _, c, _ := channels.Poll(ctx, l, reply); c == nil {
			b.Fatal("no reply")
		}
	}
}

// BenchmarkWebSocketEcho measures a generic WebSocket echoing a frame.
func BenchmarkWebSocketEcho(b *testing.B) {
	ws := &generic.WebSocket{Receive: func(ctx context.Context, c *generic.Conn) error {
		text, _ := c.Text()
		return c.Send(ctx, text)
	}}
	l := inmemory.MustNew(inmemory.Config{})
	defer l.Close()
	ctx := context.Background()
	reply, _ := l.NewChannel(ctx, "websocket.send.bench!")
	var r channels.Runner
	for b.Loop() {
		m := channels.NewMessage(l, "websocket.receive", channels.Content{"reply_channel": reply, "path": "/", "text": "hello"})
		if err := r.Run(ctx, ws, m); err != nil {
			b.Fatal(err)
		}
		if _, c, _ := channels.Poll(ctx, l, reply); c == nil {
			b.Fatal("no reply")
		}
	}
}
