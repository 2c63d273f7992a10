// Command channels-delay is the standalone delay server: it consumes
// "asgi.delay" messages from a channel layer, keeps them in a database, and
// sends each to its channel when it is due.
//
//	channels-delay --layer redis://127.0.0.1:6379/0 --database postgres://.../app
//
// The database is a SQLite file (the default, channels-delay.db in the working
// directory) or PostgreSQL; several delay servers may share one PostgreSQL
// database. The layer must reach other processes (Redis).
//
// --metrics ADDR serves Prometheus metrics on /metrics, /healthz and /readyz
// (ready when both the layer and the database answer; see docs/metrics.md);
// --log-format text|json and --log-level choose the log. The exit status is
// 0 after a clean stop (SIGINT or SIGTERM), 2 for a usage error and 1 for any
// other error.
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
	err := cli.RunDelay(ctx, os.Args[1:])
	stop()
	os.Exit(cli.ExitCode(os.Stderr, err))
}
