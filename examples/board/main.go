// Command board is a notice board whose items are bound to the browsers
// that can see them (package binding): every committed change of the
// board_items table — made through a page, by psql, or by any other program
// — reaches the pages of the users allowed to see the item, and an item
// that becomes admin-only disappears from the other users' pages. Pages
// edit the items over the same WebSocket (the "items" stream of a
// demultiplexer), through the binding's allow-list of fields.
//
// Two users exist: ada, an admin, and bob. Log in as either (no password:
// this is a demonstration) in two browsers.
//
// Everything in one process, on the in-memory layer and the SQLite file
// board.db (created with its tables; open http://127.0.0.1:8000/):
//
//	go run ./examples/board
//
// Over Redis and PostgreSQL, gateway, workers and the binding relay as
// separate processes:
//
//	export CHANNELS_LAYER=redis://127.0.0.1:6379/0
//	export BOARD_DATABASE=postgres://postgres@127.0.0.1:5432/app?sslmode=disable
//	go run ./examples/board gateway -p 8000
//	go run ./examples/board runworker --threads 4
//	go run ./examples/board runbinding
//
// Then change an item behind the application's back, and watch both pages:
//
//	psql "$BOARD_DATABASE" -c "UPDATE board_items SET title = 'Changed by psql' WHERE id = 1"
//
// The database is BOARD_DATABASE, else DATABASE_URL, else board.db.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/cli"
	"github.com/gochannels/channels/session"
)

// DefaultDatabase is the SQLite file the board uses when neither
// BOARD_DATABASE nor DATABASE_URL is set.
const DefaultDatabase = "board.db"

func main() {
	app, err := open(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "board:", err)
		os.Exit(1)
	}
	(&cli.App{
		Router:   app.Router(),
		Bindings: []binding.Registration{app.Items},
		Database: app.DB,
	}).Main()
}

func open(ctx context.Context) (*App, error) {
	dbURL := os.Getenv("BOARD_DATABASE")
	if dbURL == "" {
		dbURL = os.Getenv("DATABASE_URL")
	}
	if dbURL == "" {
		dbURL = DefaultDatabase
	}
	store, err := openStore(ctx, os.Getenv(cli.LayerEnv))
	if err != nil {
		return nil, err
	}
	return Open(ctx, dbURL, store)
}

// openStore keeps sessions in Redis when the layer is there (so that every
// worker process sees them), and in memory otherwise.
func openStore(ctx context.Context, layerURL string) (session.Store, error) {
	if strings.HasPrefix(layerURL, "redis://") || strings.HasPrefix(layerURL, "rediss://") {
		return session.OpenRedis(ctx, layerURL, "board:session:")
	}
	return session.NewMemoryStore(), nil
}
