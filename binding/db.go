package binding

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gochannels/channels/internal/sqldb"
	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DefaultTablePrefix is put before the names of the tables, triggers and
// function this package creates when Config.TablePrefix is empty.
const DefaultTablePrefix = "channels_"

// ErrClosed is returned by a DB's methods after Close.
var ErrClosed = errors.New("binding: database closed")

// Config says which database a DB uses.
type Config struct {
	// URL names the database: "postgres://…" (or postgresql://) for
	// PostgreSQL in any form pgx accepts (add "search_path=schema" to use a
	// schema); "sqlite:///abs/path.db", "sqlite:rel.db" or a plain file path
	// for SQLite (created when missing). NewSQLite ignores it.
	URL string
	// TablePrefix is put before the names of the tables, triggers and
	// function the binding creates: lower-case letters, digits and '_',
	// starting with a letter or '_', at most 40 characters. Empty means
	// DefaultTablePrefix.
	TablePrefix string
	// BusyTimeout is how long SQLite waits for another connection's write
	// lock. Zero means 10 s. Ignored for PostgreSQL.
	BusyTimeout time.Duration
	// Logger receives the logs of the DB and of the relays and consumers
	// using it. Nil means slog.Default().
	Logger *slog.Logger
}

// DB is the database the bound tables live in, SQLite (modernc) or
// PostgreSQL (pgx), as the relay and the inbound consumers use it. It is
// safe for concurrent use.
type DB struct {
	pg       bool
	sqlDB    *sql.DB // SQLite
	ownSQL   bool
	pool     *sqldb.Pool // PostgreSQL
	display  string
	prefix   string
	log      *slog.Logger
	notifyCh string

	mu     sync.Mutex
	wakers map[chan struct{}]struct{}
	closed bool
}

// Open opens the database named by url with the default table prefix.
func Open(ctx context.Context, url string) (*DB, error) {
	return OpenConfig(ctx, Config{URL: url})
}

// OpenConfig opens the database cfg describes and checks that it answers.
func OpenConfig(ctx context.Context, cfg Config) (*DB, error) {
	db, err := newDB(cfg)
	if err != nil {
		return nil, err
	}
	switch {
	case sqldb.IsPostgres(cfg.URL):
		db.pg = true
		db.display = sqldb.Redact(cfg.URL)
		db.pool, err = sqldb.NewPool(cfg.URL, 8, ErrClosed)
		if err != nil {
			return nil, fmt.Errorf("binding: open %s: %w", db.display, err)
		}
	default:
		path, perr := sqlitePath(cfg.URL)
		if perr != nil {
			return nil, perr
		}
		busy := cfg.BusyTimeout
		if busy <= 0 {
			busy = 10 * time.Second
		}
		db.display = "sqlite:" + path
		sdb, err := sql.Open("sqlite", sqldb.SQLiteDSN(path, busy, "NORMAL"))
		if err != nil {
			return nil, fmt.Errorf("binding: open %s: %w", db.display, err)
		}
		sdb.SetMaxOpenConns(4)
		db.sqlDB, db.ownSQL = sdb, true
	}
	if err := db.ping(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("binding: connect to %s: %w", db.display, err)
	}
	return db, nil
}

// NewSQLite returns a DB over an application's own SQLite database, opened
// with the "sqlite" driver (modernc.org/sqlite). cfg.URL is ignored. Close
// does not close sqlDB.
func NewSQLite(ctx context.Context, sqlDB *sql.DB, cfg Config) (*DB, error) {
	db, err := newDB(cfg)
	if err != nil {
		return nil, err
	}
	db.sqlDB, db.display = sqlDB, "sqlite (application handle)"
	if err := db.ping(ctx); err != nil {
		return nil, fmt.Errorf("binding: connect to %s: %w", db.display, err)
	}
	return db, nil
}

func newDB(cfg Config) (*DB, error) {
	prefix := cfg.TablePrefix
	if prefix == "" {
		prefix = DefaultTablePrefix
	}
	if !sqldb.ValidPrefix(prefix) {
		return nil, fmt.Errorf("binding: table prefix %q: use lower-case letters, digits and '_', starting with a letter or '_', at most 40 characters", prefix)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &DB{prefix: prefix, log: log, notifyCh: prefix + "binding", wakers: map[chan struct{}]struct{}{}}, nil
}

// String returns the database's name without its password.
func (db *DB) String() string { return db.display }

// Postgres reports whether the database is PostgreSQL.
func (db *DB) Postgres() bool { return db.pg }

// SQL returns the database/sql handle of a SQLite DB, nil for PostgreSQL.
func (db *DB) SQL() *sql.DB { return db.sqlDB }

// Close closes the database (not a handle given to NewSQLite).
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	db.mu.Unlock()
	if db.pool != nil {
		db.pool.Close()
		return nil
	}
	if db.ownSQL {
		return db.sqlDB.Close()
	}
	return nil
}

// Notify wakes the relays running on this DB at once, instead of at their
// next poll. The inbound consumers call it after each write; call it after
// your own writes to a SQLite database when the relay runs in the same
// process. PostgreSQL relays are woken by the triggers' NOTIFY as well.
func (db *DB) Notify() {
	db.mu.Lock()
	defer db.mu.Unlock()
	for w := range db.wakers {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

func (db *DB) addWaker() chan struct{} {
	w := make(chan struct{}, 1)
	db.mu.Lock()
	db.wakers[w] = struct{}{}
	db.mu.Unlock()
	return w
}

func (db *DB) removeWaker(w chan struct{}) {
	db.mu.Lock()
	delete(db.wakers, w)
	db.mu.Unlock()
}

// Exec runs a statement with '?' placeholders (rebound to $1, $2, … for
// PostgreSQL: every '?' is, even one inside a string literal, so pass such
// text as an argument) and returns the number of rows it affected.
func (db *DB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	if db.isClosed() {
		return 0, ErrClosed
	}
	q = db.rebind(q)
	if db.pg {
		return db.pool.Exec(ctx, q, args...)
	}
	res, err := db.sqlDB.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Query runs a query with '?' placeholders (rebound for PostgreSQL as in
// Exec) and returns its rows, on SQLite and PostgreSQL alike. The rows hold
// one of the DB's connections until they are closed: call Close when done
// (Next closes them when it returns false). Scan converts the columns as the
// database's driver does: database/sql (modernc.org/sqlite) for SQLite, pgx
// for PostgreSQL.
func (db *DB) Query(ctx context.Context, q string, args ...any) (*Rows, error) {
	if db.isClosed() {
		return nil, ErrClosed
	}
	q = db.rebind(q)
	if db.pg {
		rows, err := db.pool.Query(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		return &Rows{rows}, nil
	}
	rows, err := db.sqlDB.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return &Rows{sqldb.SQLRows{Rows: rows}}, nil
}

// Rows is the result of DB.Query: call Next before each row, Scan to read
// it, Err after the last, and Close. Rows is not safe for concurrent use.
type Rows struct{ r sqldb.Rows }

// Next prepares the next row for Scan and reports whether there is one.
// When it returns false the rows are closed; Err tells why they ended.
func (r *Rows) Next() bool { return r.r.Next() }

// Scan copies the columns of the current row into dest, one pointer a
// column.
func (r *Rows) Scan(dest ...any) error { return r.r.Scan(dest...) }

// Err returns the error that ended the rows early, if any.
func (r *Rows) Err() error { return r.r.Err() }

// Close closes the rows and gives their connection back. It is safe to
// call more than once.
func (r *Rows) Close() { r.r.Close() }

func (db *DB) isClosed() bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.closed
}

func (db *DB) ping(ctx context.Context) error {
	if db.pg {
		return db.pool.Ping(ctx)
	}
	return db.sqlDB.PingContext(ctx)
}

// rebind turns ? placeholders into $n for PostgreSQL.
func (db *DB) rebind(q string) string {
	if !db.pg {
		return q
	}
	return sqldb.Rebind(q)
}

// sqlitePath turns a SQLite URL or path into a file path.
func sqlitePath(u string) (string, error) {
	p, memory, err := sqldb.SQLitePath(u)
	switch {
	case err != nil:
		return "", fmt.Errorf("binding: %w", err)
	case memory:
		return "", fmt.Errorf("binding: an in-memory SQLite database cannot be shared by the relay and the application; use a file")
	}
	return p, nil
}

// RelayApplicationName is the application_name of a relay's own
// PostgreSQL connections (unless the URL sets one), to find them in
// pg_stat_activity.
const RelayApplicationName = "channels-binding-relay"

// connectRelay opens a connection outside the pool, a relay's own.
func (db *DB) connectRelay(ctx context.Context) (*pgx.Conn, error) {
	cfg := db.pool.Config()
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = RelayApplicationName
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// queryRow runs a query returning one row, with '?' placeholders.
func (db *DB) queryRow(ctx context.Context, q string, args ...any) scanner {
	q = db.rebind(q)
	if db.pg {
		return db.pool.QueryRow(ctx, q, args...)
	}
	return db.sqlDB.QueryRowContext(ctx, q, args...)
}
