// Command channels-delay is the standalone delay server: it consumes
// "asgi.delay" messages from a channel layer, keeps them in a database, and
// sends each to its channel when it is due.
//
//	channels-delay --layer redis://127.0.0.1:6379/0 --database postgres://.../app
//
// The database is a SQLite file (the default, channels-delay.db in the working
// directory) or PostgreSQL; several delay servers may share one PostgreSQL
// database. The layer must reach other processes (Redis).
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
	err := cli.RunDelay(ctx, os.Args[1:])
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "channels-delay:", err)
		os.Exit(1)
	}
}
