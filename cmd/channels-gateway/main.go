// Command channels-gateway is the standalone interface server (Daphne's
// role): it terminates HTTP and WebSocket connections and turns them into
// messages on a channel layer, for workers in other processes to consume. It
// runs no application code.
//
//	channels-gateway -b 0.0.0.0 -p 8000 redis://127.0.0.1:6379/0
//
// Flags follow Daphne's: -b/--bind, -p/--port, -u/--unix-socket, --fd,
// -e/--endpoint (repeatable), -t/--http-timeout, --access-log,
// --ping-interval, --ping-timeout, --websocket-timeout,
// --websocket-connect-timeout, --ws-protocol, --root-path, --proxy-headers;
// plus --trusted-proxies and --allowed-origins. Run with -h for all of them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gochannels/channels/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.RunGateway(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "channels-gateway:", err)
		os.Exit(1)
	}
}
