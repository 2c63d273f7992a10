package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/httpconsumer"
	"github.com/gochannels/channels/js"
	"github.com/gochannels/channels/session"
)

// The groups the items are sent to: admins see every item, users the items
// that are not admin-only.
const (
	AdminsGroup = "board-admins"
	UsersGroup  = "board-users"
)

// Stream is the demultiplexer stream of the items' binding.
const Stream = "items"

// SocketPath is the path of the page's WebSocket.
const SocketPath = "/board/"

// Item is one row of the board_items table.
type Item struct {
	ID        int64  `json:"id"`
	Title     string `json:"title"`
	Body      string `json:"body"`
	AdminOnly bool   `json:"admin_only" db:"admin_only"`
}

// Groups returns the groups that can see it (the binding's GroupNames).
func (it Item) Groups() []string {
	if it.AdminOnly {
		return []string{AdminsGroup}
	}
	return []string{AdminsGroup, UsersGroup}
}

// User is a row of the board_users table: a name and whether it is an
// admin.
type User struct {
	Name  string
	Admin bool
}

// ID returns the user's name (session.User).
func (u *User) ID() string { return u.Name }

// Group returns the group of the user's role.
func (u *User) Group() string {
	if u.Admin {
		return AdminsGroup
	}
	return UsersGroup
}

// App is the board: the database, the items' binding, and the sessions that
// tell who opened a page or a socket.
type App struct {
	// DB holds board_items and board_users, and the binding's outbox.
	DB *binding.DB
	// Items binds board_items to the "items" stream.
	Items *binding.Binding[Item]
	// Sessions gives the consumers the user who opened the socket.
	Sessions *session.Manager
	// HTTP is the HTTP side's session manager (the login form's cookie).
	HTTP *scs.SessionManager

	read reader
}

// Open opens the board on the database dbURL (a SQLite file path or a
// postgres:// URL), creates its tables (with two users, "ada" the admin and
// "bob", and two items the first time) and installs the binding's triggers,
// and keeps sessions in store.
func Open(ctx context.Context, dbURL string, store session.Store) (*App, error) {
	db, err := binding.OpenConfig(ctx, binding.Config{URL: dbURL})
	if err != nil {
		return nil, err
	}
	a := &App{DB: db, read: reader{db}}
	if err := a.createSchema(ctx); err != nil {
		a.Close()
		return nil, err
	}
	a.Items, err = binding.New(binding.Binding[Item]{
		Model:         "board.item",
		Stream:        Stream,
		Table:         "board_items",
		Fields:        []string{"title", "body", "admin_only"},
		GroupNames:    Item.Groups,
		HasPermission: a.hasPermission,
		ReplyErrors:   true,
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	// Installed here too, not only by the relay: a write through this
	// process must be captured even before any relay has started.
	if err := binding.Install(ctx, db, a.Items); err != nil {
		a.Close()
		return nil, err
	}
	mgr := &session.Manager{Store: store, Users: session.UsersByID(a.findUser)}
	sm := mgr.NewHTTPManager()
	sm.Lifetime = 24 * time.Hour
	sm.Cookie.SameSite = http.SameSiteLaxMode // forms cannot be posted from other sites
	a.Sessions, a.HTTP = mgr, sm
	return a, nil
}

// Close closes the database.
func (a *App) Close() error {
	return a.DB.Close()
}

// schema is the board's tables, per database.
var schema = map[bool][]string{
	false: { // SQLite
		`CREATE TABLE IF NOT EXISTS board_items (
			id INTEGER PRIMARY KEY AUTOINCREMENT,
			title TEXT NOT NULL DEFAULT '',
			body TEXT NOT NULL DEFAULT '',
			admin_only BOOLEAN NOT NULL DEFAULT 0)`,
		`CREATE TABLE IF NOT EXISTS board_users (name TEXT PRIMARY KEY, admin BOOLEAN NOT NULL DEFAULT 0)`,
		`CREATE TABLE IF NOT EXISTS board_seeded (id INTEGER PRIMARY KEY)`,
	},
	true: { // PostgreSQL
		`CREATE TABLE IF NOT EXISTS board_items (
			id BIGSERIAL PRIMARY KEY,
			title TEXT NOT NULL DEFAULT '',
			body TEXT NOT NULL DEFAULT '',
			admin_only BOOLEAN NOT NULL DEFAULT false)`,
		`CREATE TABLE IF NOT EXISTS board_users (name TEXT PRIMARY KEY, admin BOOLEAN NOT NULL DEFAULT false)`,
		`CREATE TABLE IF NOT EXISTS board_seeded (id INTEGER PRIMARY KEY)`,
	},
}

func (a *App) createSchema(ctx context.Context) error {
	var err error
	// Processes started together (worker, relay) may race on CREATE TABLE
	// IF NOT EXISTS in PostgreSQL; the loser's error goes on a second try.
	for range 3 {
		if err = a.createTables(ctx); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("board: create tables: %w", err)
	}
	t := "true"
	if !a.DB.Postgres() {
		t = "1"
	}
	if _, err := a.DB.Exec(ctx, `INSERT INTO board_users (name, admin) VALUES ('ada', `+t+`), ('bob', NOT `+t+`) ON CONFLICT DO NOTHING`); err != nil {
		return fmt.Errorf("board: add users: %w", err)
	}
	// Only the process that marks the board as seeded adds the first items.
	n, err := a.DB.Exec(ctx, `INSERT INTO board_seeded (id) VALUES (1) ON CONFLICT DO NOTHING`)
	if err != nil {
		return fmt.Errorf("board: seed: %w", err)
	}
	if n == 1 {
		if _, err := a.DB.Exec(ctx, `INSERT INTO board_items (title, body, admin_only) VALUES (?, ?, ?), (?, ?, ?)`,
			"Welcome", "Everyone sees this one.", false,
			"Admin notes", "Only admins see this one.", true); err != nil {
			return fmt.Errorf("board: seed: %w", err)
		}
	}
	return nil
}

func (a *App) createTables(ctx context.Context) error {
	for _, q := range schema[a.DB.Postgres()] {
		if _, err := a.DB.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// findUser looks a user up by name; nil when there is none.
func (a *App) findUser(ctx context.Context, name string) (session.User, error) {
	var u User
	found := false
	err := a.read.query(ctx, `SELECT name, admin FROM board_users WHERE name = ?`, []any{name}, func(s scan) error {
		found = true
		return s(&u.Name, &u.Admin)
	})
	if err != nil || !found {
		return nil, err
	}
	return &u, nil
}

// item reads one item; ok is false when there is none.
func (a *App) item(ctx context.Context, id int64) (it Item, ok bool, err error) {
	err = a.read.query(ctx, `SELECT id, title, body, admin_only FROM board_items WHERE id = ?`, []any{id}, func(s scan) error {
		ok = true
		return s(&it.ID, &it.Title, &it.Body, &it.AdminOnly)
	})
	return it, ok, err
}

// visible returns the items u can see, by id.
func (a *App) visible(ctx context.Context, u *User) ([]Item, error) {
	items := []Item{}
	err := a.read.query(ctx, `SELECT id, title, body, admin_only FROM board_items ORDER BY id`, nil, func(s scan) error {
		var it Item
		if err := s(&it.ID, &it.Title, &it.Body, &it.AdminOnly); err != nil {
			return err
		}
		for _, g := range it.Groups() {
			if g == u.Group() {
				items = append(items, it)
				break
			}
		}
		return nil
	})
	return items, err
}

// hasPermission is the binding's HasPermission: admins may do anything;
// other users may create items, and change or delete the items they can
// see (not the admin-only ones).
func (a *App) hasPermission(ctx context.Context, user session.User, action string, pk any) bool {
	u, ok := user.(*User)
	if !ok {
		return false // anonymous
	}
	if u.Admin || action == binding.ActionCreate {
		return true
	}
	id, ok := toID(pk)
	if !ok {
		return false
	}
	it, found, err := a.item(ctx, id)
	if err != nil {
		slog.Error("board: permission check", "pk", pk, "error", err)
		return false
	}
	return !found || !it.AdminOnly
}

func toID(pk any) (int64, bool) {
	switch v := pk.(type) {
	case float64:
		return int64(v), v == float64(int64(v))
	case int64:
		return v, true
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	case string:
		var n int64
		_, err := fmt.Sscan(v, &n)
		return n, err == nil
	}
	return 0, false
}

// Router routes the page's socket to the demultiplexer and the pages to the
// HTTP handler.
func (a *App) Router() *channels.Router {
	demux := &generic.Demultiplexer{
		Options:   generic.Options{Name: "board", Sessions: a.Sessions, HTTPUser: true},
		Consumers: map[string]channels.Consumer{Stream: a.Items.Consumer(a.DB)},
		// Only logged-in users get a socket; it joins the group of the
		// user's role before it is accepted, so it misses no change.
		Connect: func(ctx context.Context, c *generic.Conn) error {
			u, ok := session.UserFrom(ctx).(*User)
			if !ok {
				return channels.ErrDenyConnection
			}
			return c.Message.Group(u.Group()).Add(ctx, c.Message.ReplyChannel)
		},
	}
	socket := channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		if m.Channel == "websocket.disconnect" {
			// The role may have changed since the connect: leave both.
			var errs []error
			for _, g := range []string{AdminsGroup, UsersGroup} {
				errs = append(errs, m.Group(g).Discard(ctx, m.ReplyChannel))
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
		}
		return demux.Consume(ctx, m)
	})
	r := channels.NewRouter()
	r.Route("websocket.connect", socket, channels.Path("^"+SocketPath+"$"))
	r.Route("websocket.receive", socket, channels.Path("^"+SocketPath+"$"))
	r.Route("websocket.disconnect", socket, channels.Path("^"+SocketPath+"$"))
	r.Route("websocket.connect", channels.ConsumerFunc(func(context.Context, *channels.Message) error {
		return channels.ErrDenyConnection // any other socket path
	}))
	r.Route("http.request", httpconsumer.New(a.Pages()))
	return r
}

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Parse(pageHTML))

// Pages serves the login form, the board page and the list of the items the
// user can see (/items.json, which the page loads once its socket is open);
// they run in the workers, for http.request messages.
func (a *App) Pages() http.Handler {
	mux := http.NewServeMux()
	user := func(r *http.Request) *User {
		u, _ := a.findUser(r.Context(), a.HTTP.GetString(r.Context(), session.AuthUserIDKey))
		bu, _ := u.(*User)
		return bu
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		data := map[string]any{"Script": js.ScriptTag(), "Stream": Stream, "Socket": SocketPath}
		if u := user(r); u != nil {
			data["User"], data["Admin"] = u.Name, u.Admin
		}
		_ = page.Execute(w, data)
	})
	mux.HandleFunc("GET /items.json", func(w http.ResponseWriter, r *http.Request) {
		u := user(r)
		if u == nil {
			http.Error(w, "log in first", http.StatusForbidden)
			return
		}
		items, err := a.visible(r.Context(), u)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// The shape the page's BindingCollection keeps: data and pk.
		list := make([]map[string]any, len(items))
		for i, it := range items {
			list[i] = map[string]any{"pk": it.ID, "title": it.Title, "body": it.Body, "admin_only": it.AdminOnly}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(list)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimSpace(r.PostFormValue("name"))
		u, err := a.findUser(r.Context(), name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if u == nil {
			http.Error(w, "no such user (try ada, the admin, or bob)", http.StatusForbidden)
			return
		}
		if err := session.LoginHTTP(r.Context(), a.HTTP, u, "form"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		name := a.HTTP.GetString(r.Context(), session.AuthUserIDKey)
		if err := a.HTTP.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if m := httpconsumer.Message(r); m != nil && name != "" {
			if _, err := a.Sessions.LogoutSockets(r.Context(), m.Layer, name); err != nil {
				slog.Error("board: closing the sockets of a logged-out user", "user", name, "error", err)
			}
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	// The JavaScript client, for a gateway that does not serve it itself.
	return js.Wrap(a.HTTP.LoadAndSave(mux))
}
