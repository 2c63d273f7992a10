package binding_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/session"
)

// Task is a row of the table "tasks".
type Task struct {
	ID      int64  `json:"id"`
	Title   string `json:"title"`
	Private bool   `json:"private"`
	Owner   string `json:"owner"`
}

// A binding of the table "tasks": everyone sees public tasks, the owner's
// group sees every task of theirs. A relay sends each committed change to
// the groups; here one channel stands for the sockets of the group
// "tasks-public", and the change is written with plain SQL.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, _ := os.MkdirTemp("", "binding-example")
	defer os.RemoveAll(dir)

	tasks, err := binding.New(binding.Binding[Task]{
		Model: "todo.task", Stream: "tasks", Table: "tasks",
		Fields: []string{"title", "private"}, // owner is never sent nor written by clients
		GroupNames: func(t Task) []string {
			groups := []string{"tasks-owner-" + t.Owner}
			if !t.Private {
				groups = append(groups, "tasks-public")
			}
			return groups
		},
		HasPermission: func(ctx context.Context, u session.User, action string, pk any) bool {
			return session.Authenticated(u)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	db, err := binding.OpenConfig(ctx, binding.Config{URL: "sqlite://" + filepath.Join(dir, "app.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	if _, err := db.Exec(ctx, "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, private BOOLEAN NOT NULL DEFAULT 0, owner TEXT NOT NULL)"); err != nil {
		fmt.Println(err)
		return
	}
	if err := binding.Install(ctx, db, tasks); err != nil {
		fmt.Println(err)
		return
	}

	layer := inmemory.MustNew(inmemory.Config{})
	defer layer.Close()
	_ = layer.GroupAdd(ctx, "tasks-public", "socket.send!1")
	relay := &binding.Relay{DB: db, Layer: layer, Bindings: []binding.Registration{tasks}}
	done := make(chan error)
	go func() { done <- relay.Run(ctx) }()

	// Any write is reported: here SQL run directly on the table.
	_, _ = db.Exec(ctx, "INSERT INTO tasks (title, owner) VALUES ('write the docs', 'ada')")
	db.Notify() // or wait for the relay's poll
	_, c, _ := layer.Receive(ctx, "socket.send!1")
	fmt.Println(c.String("text"))

	// Made private, the task leaves the public group's view.
	_, _ = db.Exec(ctx, "UPDATE tasks SET private = 1 WHERE owner = 'ada'")
	db.Notify()
	_, c, _ = layer.Receive(ctx, "socket.send!1")
	fmt.Println(strings.Contains(c.String("text"), `"action":"delete"`))

	cancel()
	fmt.Println("Run:", <-done)
	// Output:
	// {"stream":"tasks","payload":{"action":"create","pk":1,"data":{"private":false,"title":"write the docs"},"model":"todo.task","change_id":1}}
	// true
	// Run: <nil>
}

// A binding needs Fields (binding.AllFields for every field) or Exclude:
// there is no default, and New says so at once.
func ExampleNew() {
	_, err := binding.New(binding.Binding[Task]{
		Model: "todo.task", Stream: "tasks", Table: "tasks",
		GroupNames: func(Task) []string { return []string{"tasks"} },
	})
	fmt.Println(errors.Is(err, binding.ErrInvalidBinding))
	fmt.Println(err)
	// Output:
	// true
	// binding: invalid binding "todo.task": set Fields (binding.AllFields for every field) or Exclude
}

// The inbound side: the binding's consumer serves its stream in a
// demultiplexer, which gives it the user of the socket's session. Each
// logged-in user's sockets are in session.UserGroup(id) (the session
// middleware joins and leaves it), so a GroupNames built on it reaches
// exactly the owner's sockets; everyone joins "tasks-public".
func ExampleBinding_Consumer() {
	tasks, _ := binding.New(binding.Binding[Task]{
		Model: "todo.task", Stream: "tasks", Table: "tasks",
		Fields: []string{"title", "private"},
		GroupNames: func(t Task) []string {
			groups := []string{session.UserGroup(t.Owner)}
			if !t.Private {
				groups = append(groups, "tasks-public")
			}
			return groups
		},
		HasPermission: func(ctx context.Context, u session.User, action string, pk any) bool {
			return session.Authenticated(u)
		},
		ReplyErrors: true,
	})
	var db *binding.DB // from binding.Open
	sessions := &session.Manager{Store: session.NewMemoryStore()}
	demux := &generic.Demultiplexer{
		Options:   generic.Options{Sessions: sessions, HTTPUser: true, Groups: []string{"tasks-public"}},
		Consumers: map[string]channels.Consumer{"tasks": tasks.Consumer(db)},
	}
	r := channels.NewRouter()
	r.Handle(demux, channels.Path(`^/tasks/$`))
	fmt.Println(r.Channels())
	// Output:
	// [websocket.connect websocket.disconnect websocket.receive]
}

// Query reads the application's rows through the same handle the binding
// writes with, on SQLite and PostgreSQL alike: '?' placeholders, rows
// closed when done.
func ExampleDB_Query() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "binding-example")
	defer os.RemoveAll(dir)
	db, err := binding.Open(ctx, "sqlite://"+filepath.Join(dir, "app.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	_, _ = db.Exec(ctx, "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, private INTEGER)")
	_, _ = db.Exec(ctx, "INSERT INTO tasks (title, private) VALUES (?, ?), (?, ?)", "write docs", 0, "plan", 1)

	rows, err := db.Query(ctx, "SELECT id, title FROM tasks WHERE private = ? ORDER BY id", 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id    int64
			title string
		)
		if err := rows.Scan(&id, &title); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(id, title)
	}
	fmt.Println(rows.Err())
	// Output:
	// 1 write docs
	// <nil>
}
