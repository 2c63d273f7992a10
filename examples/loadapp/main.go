// Command loadapp is the application the load tool (cmd/channels-load)
// measures: the same protocol as the tool's reference server, done the
// Channels way — through the gateway, the channel layer and workers.
//
//	GET /http/                 200 "ok"
//	WebSocket /echo/           every text frame is sent back
//	WebSocket /fanout/<room>/  every frame is broadcast to the room's group
//
// Run it like any Channels application:
//
//	go run ./examples/loadapp runserver 127.0.0.1:8000 --nodelay
//	CHANNELS_LAYER=redis://127.0.0.1:6379/0 go run ./examples/loadapp gateway -p 8000
//	CHANNELS_LAYER=redis://127.0.0.1:6379/0 go run ./examples/loadapp runworker --threads 16
package main

import (
	"context"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/cli"
)

const fanoutPath = `^/fanout/(?P<room>[A-Za-z0-9_-]{1,64})/$`

// Router is the load-test application.
func Router() *channels.Router {
	r := channels.NewRouter()
	r.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{
			"status":  int64(200),
			"headers": []any{[]any{[]byte("Content-Type"), []byte("text/plain")}},
			"content": []byte("ok"),
		})
	}, channels.Path(`^/http/$`))

	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		if t, ok := m.Content["text"].(string); ok {
			return m.Reply(ctx, channels.Content{"text": t})
		}
		return m.Reply(ctx, channels.Content{"bytes": m.Content.Bytes("bytes")})
	}, channels.Path(`^/echo/$`))

	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		if err := m.Group("fanout-"+m.PathValue("room")).Add(ctx, m.ReplyChannel); err != nil {
			return err
		}
		return m.Reply(ctx, channels.Content{"accept": true})
	}, channels.Path(fanoutPath))
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Group("fanout-"+m.PathValue("room")).Send(ctx, channels.Content{"text": m.Content.String("text")})
	}, channels.Path(fanoutPath))
	r.RouteFunc("websocket.disconnect", func(ctx context.Context, m *channels.Message) error {
		return m.Group("fanout-"+m.PathValue("room")).Discard(ctx, m.ReplyChannel)
	}, channels.Path(fanoutPath))
	return r
}

func main() { cli.Main(Router()) }
