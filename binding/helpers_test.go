package binding_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/generic"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/session"
	"github.com/jackc/pgx/v5"
)

// env is one test's database, with a second connection of the database's
// own driver for writes made outside this package.
type env struct {
	t      testing.TB
	pg     bool
	url    string
	db     *binding.DB
	rawSQL *sql.DB   // SQLite
	rawPG  *pgx.Conn // PostgreSQL
}

// eachDB runs f on SQLite, and on PostgreSQL when DATABASE_URL is set (a
// schema of its own, dropped at the end).
func eachDB(t *testing.T, f func(t *testing.T, e *env)) {
	t.Run("sqlite", func(t *testing.T) { f(t, sqliteEnv(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, pgEnv(t)) })
}

func sqliteEnv(t testing.TB) *env {
	path := filepath.Join(t.TempDir(), "app.db")
	e := &env{t: t, url: "sqlite://" + path}
	db, err := binding.Open(context.Background(), e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db = db
	raw, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	e.rawSQL = raw
	return e
}

func pgEnv(t testing.TB) *env {
	base := testenv.DatabaseURL(t)
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	schema := "binding_test_" + hex.EncodeToString(b)
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		testenv.Missing(t, "PostgreSQL at DATABASE_URL does not answer: %v", err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(context.Background())
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	e := &env{t: t, pg: true, url: base + sep + "search_path=" + schema}
	db, err := binding.Open(ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db = db
	raw, err := pgx.Connect(ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close(context.Background()) })
	e.rawPG = raw
	return e
}

// raw runs q with the database's own driver, not through this package;
// '?' placeholders are rebound to $n on PostgreSQL.
func (e *env) raw(q string, args ...any) int64 {
	e.t.Helper()
	ctx := context.Background()
	if e.pg {
		n := 0
		var b strings.Builder
		for _, c := range q {
			if c == '?' {
				n++
				fmt.Fprintf(&b, "$%d", n)
				continue
			}
			b.WriteRune(c)
		}
		tag, err := e.rawPG.Exec(ctx, b.String(), args...)
		if err != nil {
			e.t.Fatalf("%s: %v", q, err)
		}
		return tag.RowsAffected()
	}
	res, err := e.rawSQL.ExecContext(ctx, q, args...)
	if err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	n, _ := res.RowsAffected()
	return n
}

// queryInt returns one integer.
func (e *env) queryInt(q string, args ...any) int64 {
	e.t.Helper()
	var n int64
	var err error
	if e.pg {
		q = strings.ReplaceAll(q, "?", "$1")
		err = e.rawPG.QueryRow(context.Background(), q, args...).Scan(&n)
	} else {
		err = e.rawSQL.QueryRowContext(context.Background(), q, args...).Scan(&n)
	}
	if err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (e *env) queryString(q string, args ...any) string {
	e.t.Helper()
	var s string
	var err error
	if e.pg {
		q = strings.ReplaceAll(q, "?", "$1")
		err = e.rawPG.QueryRow(context.Background(), q, args...).Scan(&s)
	} else {
		err = e.rawSQL.QueryRowContext(context.Background(), q, args...).Scan(&s)
	}
	if err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return s
}

// User is the spec's user model.
type User struct {
	ID        int64  `json:"id"`
	Username  string `json:"username"`
	Email     string `json:"email"`
	Password  string `json:"password"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
}

func (e *env) createUsers() {
	e.t.Helper()
	if e.pg {
		e.raw(`CREATE TABLE users (id bigserial PRIMARY KEY, username text NOT NULL DEFAULT '', email text NOT NULL DEFAULT '',
			password text NOT NULL DEFAULT '', first_name text NOT NULL DEFAULT '', last_name text NOT NULL DEFAULT '')`)
		return
	}
	e.raw(`CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL DEFAULT '', email TEXT NOT NULL DEFAULT '',
		password TEXT NOT NULL DEFAULT '', first_name TEXT NOT NULL DEFAULT '', last_name TEXT NOT NULL DEFAULT '')`)
}

// Item is the board example's row: AdminOnly decides who sees it.
type Item struct {
	ID        int64      `json:"id"`
	Title     string     `json:"title"`
	AdminOnly bool       `json:"admin_only" db:"admin_only"`
	Secret    string     `json:"secret"`
	N         int64      `json:"n"`
	Price     string     `json:"price"`
	Updated   *time.Time `json:"updated"`
}

func (e *env) createItems() {
	e.t.Helper()
	if e.pg {
		e.raw(`CREATE TABLE items (id bigserial PRIMARY KEY, title text NOT NULL DEFAULT '', admin_only boolean NOT NULL DEFAULT false,
			secret text NOT NULL DEFAULT '', n bigint NOT NULL DEFAULT 0, price numeric(10,2), updated timestamptz)`)
		return
	}
	e.raw(`CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL DEFAULT '', admin_only BOOLEAN NOT NULL DEFAULT 0,
		secret TEXT NOT NULL DEFAULT '', n INTEGER NOT NULL DEFAULT 0, price NUMERIC, updated TIMESTAMP)`)
}

// itemGroups is the spec's admin_only example.
func itemGroups(it Item) []string {
	if it.AdminOnly {
		return []string{"admins"}
	}
	return []string{"admins", "users"}
}

func mustNew[T any](t *testing.T, b binding.Binding[T]) *binding.Binding[T] {
	t.Helper()
	nb, err := binding.New(b)
	if err != nil {
		t.Fatal(err)
	}
	return nb
}

// server is a live gateway and worker serving a demultiplexer at
// /bind/<groups>/, where <groups> is a comma-separated list of the groups
// the socket joins; each binding's stream is served by its consumer.
type server struct {
	*channelstest.Server
	mgr   *session.Manager
	demux *generic.Demultiplexer
}

func startServer(t *testing.T, e *env, streams map[string]channels.Consumer) *server {
	t.Helper()
	mgr := &session.Manager{Store: session.NewMemoryStore()}
	d := &generic.Demultiplexer{
		Options: generic.Options{Sessions: mgr, HTTPUser: true, ConnectionGroups: func(m *channels.Message) []string {
			var gs []string
			for g := range strings.SplitSeq(m.PathValue("groups"), ",") {
				if g != "" {
					gs = append(gs, g)
				}
			}
			return gs
		}},
		Consumers: streams,
	}
	r := channels.NewRouter()
	r.Handle(d, channels.Path(`^/bind/(?P<groups>[a-z0-9,-]*)/$`))
	// Room for the bulk tests' bursts (thousands of messages to a socket
	// within milliseconds) even on a loaded machine.
	layer := inmemory.MustNew(inmemory.Config{ProcessCapacity: 10000})
	t.Cleanup(func() { layer.Close() })
	srv := channelstest.StartServer(t, channelstest.ServerConfig{Consumer: r, Layer: layer})
	return &server{Server: srv, mgr: mgr, demux: d}
}

// dial opens a socket in groups, logged in as user when user is not "".
func (s *server) dial(t *testing.T, user string, groups ...string) *channelstest.WSClient {
	t.Helper()
	ws := s.NewWSClient("/bind/" + strings.Join(groups, ",") + "/")
	// SQLite's triggers over thousands of rows under -race on a loaded
	// machine take seconds.
	ws.Timeout = 15 * time.Second
	if user != "" {
		ws.Cookies = append(ws.Cookies, channelstest.Login(t, s.mgr, session.UserID(user)))
	}
	ws.Dial()
	return ws
}

// startRelay runs a relay over the server's layer until the test ends.
func startRelay(t *testing.T, e *env, s *server, bs ...binding.Registration) *binding.Relay {
	t.Helper()
	r := &binding.Relay{DB: e.db, Layer: s.Layer.(channels.GroupLayer), Bindings: bs, PollInterval: 50 * time.Millisecond}
	runRelay(t, r)
	return r
}

func runRelay(t *testing.T, r *binding.Relay) {
	t.Helper()
	// Install before the test writes, so that its writes are captured.
	if err := binding.Install(context.Background(), r.DB, r.Bindings...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
}

// message is a binding message as a client decodes it.
type message struct {
	Stream  string `json:"stream"`
	Payload struct {
		Action   string         `json:"action"`
		PK       any            `json:"pk"`
		Data     map[string]any `json:"data"`
		Model    string         `json:"model"`
		ChangeID int64          `json:"change_id"`
		Error    string         `json:"error"`
	} `json:"payload"`
}

func receive(t *testing.T, ws *channelstest.WSClient) message {
	t.Helper()
	text := ws.ReceiveText()
	var m message
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		t.Fatalf("not a binding message: %s: %v", text, err)
	}
	return m
}

// pkOf returns a message's pk as an integer.
func pkOf(t *testing.T, m message) int64 {
	t.Helper()
	f, ok := m.Payload.PK.(float64)
	if !ok {
		t.Fatalf("pk %v (%T) is not a number", m.Payload.PK, m.Payload.PK)
	}
	return int64(f)
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
