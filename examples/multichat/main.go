// Command multichat is a chat whose page talks to the server over one
// WebSocket carrying two streams through a demultiplexer: "messages" for
// the chat lines and "presence" for who comes and goes. Users log in with a
// small form; the WebSocket finds the user in the HTTP session cookie, and
// logging out closes the user's open sockets.
//
// Everything in one process, on the in-memory layer (open
// http://127.0.0.1:8000/):
//
//	go run ./examples/multichat
//
// Gateway and workers in separate processes, meeting in Redis, which also
// keeps the sessions:
//
//	export CHANNELS_LAYER=redis://127.0.0.1:6379/0
//	go run ./examples/multichat gateway -p 8000
//	go run ./examples/multichat runworker
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/gochannels/channels/cli"
	"github.com/gochannels/channels/session"
)

func main() {
	store, err := openStore(os.Getenv(cli.LayerEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "multichat:", err)
		os.Exit(1)
	}
	cli.Main(New(store).Router())
}

// openStore keeps sessions in Redis when the layer is there (so that every
// worker process sees them), and in memory otherwise.
func openStore(layerURL string) (session.Store, error) {
	if strings.HasPrefix(layerURL, "redis://") || strings.HasPrefix(layerURL, "rediss://") {
		return session.OpenRedis(context.Background(), layerURL, "multichat:session:")
	}
	return session.NewMemoryStore(), nil
}
