package cli_test

import (
	"context"
	"fmt"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/cli"
)

// A Channels program is its router plus cli.Main, which gives it the
// runserver, runworker, gateway and rundelay subcommands.
func ExampleMain() {
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": m.Content.String("text")})
	})
	_ = func() { cli.Main(r) } // in func main()
}

func ExampleOpenLayer() {
	l, err := cli.OpenLayer(context.Background(), "memory://?capacity=500&expiry=30")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(l, cli.IsInMemory(l))
	// Output:
	// in-memory layer true
}

func ExampleBuildEndpoints() {
	fmt.Println(cli.BuildEndpoints(cli.EndpointOptions{Port: 8080, UnixSocket: "/run/app.sock", FD: -1}))
	// Output:
	// [tcp:port=8080:interface=127.0.0.1 unix:/run/app.sock]
}
