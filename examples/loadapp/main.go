// Command loadapp is the application the load tool (cmd/channels-load)
// measures: the same protocol as the tool's reference server, done the
// Channels way — through the gateway, the channel layer and workers.
//
//	GET /http/                 200 "ok"
//	WebSocket /echo/           accepted by a websocket.connect consumer;
//	                           every text frame is sent back
//	WebSocket /fanout/<room>/  joins the room's group on connect; every
//	                           frame is broadcast to the group
//
// Run it like any Channels application:
//
//	go run ./examples/loadapp runserver 127.0.0.1:8000 --nodelay
//	CHANNELS_LAYER=redis://127.0.0.1:6379/0 go run ./examples/loadapp gateway -p 8000
//	CHANNELS_LAYER=redis://127.0.0.1:6379/0 go run ./examples/loadapp runworker --threads 16
//
// --enforce-ordering (before or after the command's own flags, with
// runserver or runworker) wraps the fanout consumers in
// session.EnforceOrdering, so that a publisher's frames are broadcast in
// the order it sent them even when several worker processes consume them.
// The channel sessions it needs live in Redis when the layer does (the
// layer's first host and database, keys under "loadapp:session:"), in
// memory otherwise.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/cli"
	"github.com/gochannels/channels/redislayer"
	"github.com/gochannels/channels/session"
)

const fanoutPath = `^/fanout/(?P<room>[A-Za-z0-9_-]{1,64})/$`

// Router is the load-test application, its messages consumed in arrival
// order per worker process.
func Router() *channels.Router { return NewRouter(nil) }

// NewRouter is the load-test application with ordering, when not nil,
// wrapped around the fanout route's consumers (connect, receive and
// disconnect: strict ordering numbers all three).
func NewRouter(ordering channels.Middleware) *channels.Router {
	fanout := func(f channels.ConsumerFunc) channels.Consumer {
		if ordering == nil {
			return f
		}
		return channels.Chain(f, ordering)
	}
	r := channels.NewRouter()
	// The response the load tool's reference server gives: with a
	// Content-Length, as applications give complete responses (Django's
	// CommonMiddleware, package httpconsumer); without one the gateway
	// would frame the body in chunks.
	r.RouteFunc("http.request", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{
			"status": int64(200),
			"headers": []any{
				[]any{[]byte("Content-Type"), []byte("text/plain; charset=utf-8")},
				[]any{[]byte("Content-Length"), []byte("2")},
			},
			"content": []byte("ok"),
		})
	}, channels.Path(`^/http/$`))

	// The connect mode of the load tool measures this handshake: the
	// gateway holds it open until a worker has consumed the connect.
	r.Route("websocket.connect", channels.AcceptConnection, channels.Path(`^/echo/$`))
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		if t, ok := m.Content["text"].(string); ok {
			return m.Reply(ctx, channels.Content{"text": t})
		}
		return m.Reply(ctx, channels.Content{"bytes": m.Content.Bytes("bytes")})
	}, channels.Path(`^/echo/$`))

	r.Route("websocket.connect", fanout(func(ctx context.Context, m *channels.Message) error {
		if err := m.Group("fanout-"+m.PathValue("room")).Add(ctx, m.ReplyChannel); err != nil {
			return err
		}
		return m.Reply(ctx, channels.Content{"accept": true})
	}), channels.Path(fanoutPath))
	r.Route("websocket.receive", fanout(func(ctx context.Context, m *channels.Message) error {
		return m.Group("fanout-"+m.PathValue("room")).Send(ctx, channels.Content{"text": m.Content.String("text")})
	}), channels.Path(fanoutPath))
	r.Route("websocket.disconnect", fanout(func(ctx context.Context, m *channels.Message) error {
		return m.Group("fanout-"+m.PathValue("room")).Discard(ctx, m.ReplyChannel)
	}), channels.Path(fanoutPath))
	return r
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	os.Exit(cli.ExitCode(os.Stderr, err))
}

// run takes --enforce-ordering out of args and runs the command line.
func run(ctx context.Context, args []string) error {
	args, ordered := takeFlag(args, "enforce-ordering")
	router := Router()
	if ordered {
		store, err := openStore(ctx, layerURL(args))
		if err != nil {
			return err
		}
		if c, ok := store.(io.Closer); ok {
			defer c.Close()
		}
		ordering, err := (&session.Manager{Store: store}).EnforceOrdering(session.StrictOrdering)
		if err != nil {
			return err
		}
		router = NewRouter(ordering)
	}
	return (&cli.App{Router: router, Name: "loadapp"}).Run(ctx, args)
}

// takeFlag removes every -name and --name (a boolean flag) from args and
// reports whether there was one.
func takeFlag(args []string, name string) ([]string, bool) {
	out := make([]string, 0, len(args))
	found := false
	for _, a := range args {
		if a == "-"+name || a == "--"+name {
			found = true
			continue
		}
		out = append(out, a)
	}
	return out, found
}

// layerURL is the layer the command will use: its --layer flag, else
// $CHANNELS_LAYER.
func layerURL(args []string) string {
	for i, a := range args {
		for _, p := range []string{"-layer", "--layer"} {
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v
			}
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
		}
	}
	return os.Getenv(cli.LayerEnv)
}

// openStore keeps the channel sessions where every worker process of the
// deployment finds them: in the Redis server of the layer (its first host,
// with the Redis client's URL options but not the layer's), or in memory for
// a single process.
func openStore(ctx context.Context, layer string) (session.Store, error) {
	if !strings.HasPrefix(layer, "redis") && !strings.HasPrefix(layer, "unix://") {
		return session.NewMemoryStore(), nil
	}
	cfg, err := redislayer.ParseURL(layer)
	if err != nil {
		return nil, fmt.Errorf("loadapp: layer URL: %w", err)
	}
	if len(cfg.Hosts) == 0 {
		return nil, fmt.Errorf("loadapp: --enforce-ordering needs the layer's Redis host in its URL, got %q", layer)
	}
	s, err := session.OpenRedis(ctx, cfg.Hosts[0], "loadapp:session:")
	if err != nil {
		return nil, fmt.Errorf("loadapp: session store for --enforce-ordering: %w", err)
	}
	return s, nil
}
