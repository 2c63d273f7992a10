package cli_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/cli"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

type note struct {
	ID   int64  `json:"id"`
	Text string `json:"text"`
}

// notesApp is an application with one binding, of the notes table of a
// fresh SQLite file (path), to the group "notes".
func notesApp(t *testing.T) (*cli.App, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notes.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	b, err := binding.New(binding.Binding[note]{
		Model: "test.note", Stream: "notes", Table: "notes", Fields: []string{binding.AllFields},
		GroupNames: func(note) []string { return []string{"notes"} },
	})
	if err != nil {
		t.Fatal(err)
	}
	return &cli.App{Router: channels.NewRouter(), Bindings: []binding.Registration{b}, Stdout: &syncBuffer{}, Stderr: &syncBuffer{}}, path
}

func TestRunbindingRefusals(t *testing.T) {
	ctx := context.Background()
	app, path := notesApp(t)
	if err := app.Run(ctx, []string{"runbinding", "--database", path}); !errors.Is(err, cli.ErrInMemoryLayer) {
		t.Errorf("runbinding on the in-memory layer: %v, want ErrInMemoryLayer", err)
	}
	bare := &cli.App{Router: channels.NewRouter(), Stdout: &syncBuffer{}, Stderr: &syncBuffer{}}
	if err := bare.Run(ctx, []string{"runbinding"}); !errors.Is(err, cli.ErrNoBindings) {
		t.Errorf("runbinding without bindings: %v, want ErrNoBindings", err)
	}
	// runserver with bindings but no database to relay them from.
	err := app.Run(ctx, []string{"runserver", "127.0.0.1:0", "--nodelay"})
	if err == nil || !strings.Contains(err.Error(), "App.Database") {
		t.Errorf("runserver with Bindings and no Database: %v", err)
	}
}

// runbinding as its own role: a row inserted with the database's own
// client, not through the application, reaches the group over Redis.
func TestRunbindingRelaysOverRedis(t *testing.T) {
	u, err := url.Parse(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("prefix", strings.TrimSuffix(testenv.Prefix("clibinding"), ":"))
	u.RawQuery = q.Encode()
	layerURL := u.String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := redislayer.Open(ctx, layerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Flush(context.Background()); l.Close() }()
	ch, err := l.NewChannel(ctx, "watcher!")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.GroupAdd(ctx, "notes", ch); err != nil {
		t.Fatal(err)
	}

	app, path := notesApp(t)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(runCtx, []string{"runbinding", "--layer", layerURL, "--database", path, "--sleep", "0.05"})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("runbinding: %v\n%s", err, app.Stderr.(*syncBuffer).String())
		}
	}()

	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The relay installs the triggers at start; until then the insert is
	// not captured, so wait for them.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		_ = db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'notes'`).Scan(&n)
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runbinding installed no triggers:\n%s", app.Stderr.(*syncBuffer).String())
		}
	}
	if _, err := db.Exec(`INSERT INTO notes (id, text) VALUES (7, 'hello')`); err != nil {
		t.Fatal(err)
	}
	_, c, err := l.Receive(ctx, ch)
	if err != nil {
		t.Fatalf("no message for the group: %v\n%s", err, app.Stderr.(*syncBuffer).String())
	}
	var env struct {
		Stream  string `json:"stream"`
		Payload struct {
			Action string         `json:"action"`
			PK     int64          `json:"pk"`
			Data   map[string]any `json:"data"`
			Model  string         `json:"model"`
		} `json:"payload"`
	}
	if err := json.Unmarshal([]byte(c.String("text")), &env); err != nil {
		t.Fatal(err)
	}
	if env.Stream != "notes" || env.Payload.Action != "create" || env.Payload.PK != 7 || env.Payload.Model != "test.note" || env.Payload.Data["text"] != "hello" {
		t.Fatalf("message %s", c.String("text"))
	}
}
