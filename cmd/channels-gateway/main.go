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
//
// --metrics ADDR serves Prometheus metrics on /metrics, /healthz and /readyz
// (see docs/metrics.md); --log-format text|json and --log-level choose the
// log. The exit status is 0 after a clean stop (SIGINT or SIGTERM), 2 for a
// usage error and 1 for any other error.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/gochannels/channels/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.RunGateway(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.ExitCode(os.Stderr, err))
}
