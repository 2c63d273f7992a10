package session

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/gochannels/channels/internal/sqldb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// SQLConfig configures the SQL stores.
type SQLConfig struct {
	// Table is the sessions table, created when missing. Empty means
	// "sessions", the table scs's sqlite3store and postgresstore use, with
	// the same columns (token, data, expiry), so both can share it.
	Table string
	// CleanupInterval is how often expired rows are deleted by a background
	// goroutine, stopped by Close. Zero means 5 minutes; a negative value
	// starts no goroutine (call DeleteExpired yourself; a warning is
	// logged).
	CleanupInterval time.Duration
	// MaxConns bounds the PostgreSQL store's connections. Zero means 4.
	MaxConns int
	// Logger receives cleanup errors. Nil means slog.Default().
	Logger *slog.Logger
}

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func (c SQLConfig) table() (string, error) {
	t := c.Table
	if t == "" {
		t = "sessions"
	}
	if !tableName.MatchString(t) {
		return "", fmt.Errorf("session: table name %q: use letters, digits and '_'", t)
	}
	return t, nil
}

// cleaner runs a store's DeleteExpired periodically.
type cleaner struct {
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func (c *cleaner) start(cfg SQLConfig, what string, del func(context.Context) (int64, error)) {
	c.stop = make(chan struct{})
	iv := cfg.CleanupInterval
	if iv < 0 {
		logger(cfg.Logger).Warn("session: expired sessions are never deleted from the " + what + " store unless DeleteExpired is called")
		return
	}
	if iv == 0 {
		iv = 5 * time.Minute
	}
	c.wg.Go(func() {
		t := time.NewTicker(iv)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				if _, err := del(ctx); err != nil {
					logger(cfg.Logger).Error("session: deleting expired sessions failed", "store", what, "error", err)
				}
				cancel()
			}
		}
	})
}

func (c *cleaner) close() {
	c.once.Do(func() {
		if c.stop != nil {
			close(c.stop)
		}
	})
	c.wg.Wait()
}

// julianDay converts t to the Julian day number SQLite's julianday()
// returns, which is how scs's sqlite3store keeps expiry times.
func julianDay(t time.Time) float64 {
	return float64(t.UnixNano())/float64(24*time.Hour) + 2440587.5
}

// SQLiteStore is a Store in a SQLite database (modernc.org/sqlite, no cgo).
// It is safe for concurrent use; its methods block on the database.
type SQLiteStore struct {
	db    *sql.DB
	owned bool
	table string
	cl    cleaner
}

// OpenSQLite opens (creating it if needed) the SQLite database at path
// with WAL journaling and a 5 s busy timeout, and returns a store on it that
// closes the database on Close.
func OpenSQLite(ctx context.Context, path string, cfg SQLConfig) (*SQLiteStore, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return nil, fmt.Errorf("session: open sqlite %s: %w", path, err)
	}
	s, err := NewSQLiteStore(ctx, db, cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

// NewSQLiteStore returns a store on an open database (driver "sqlite"),
// creating the table when missing. Close does not close db.
func NewSQLiteStore(ctx context.Context, db *sql.DB, cfg SQLConfig) (*SQLiteStore, error) {
	t, err := cfg.table()
	if err != nil {
		return nil, err
	}
	_, err = db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+t+` (token TEXT PRIMARY KEY, data BLOB NOT NULL, expiry REAL NOT NULL);
CREATE INDEX IF NOT EXISTS `+t+`_expiry_idx ON `+t+`(expiry);`)
	if err != nil {
		return nil, fmt.Errorf("session: create table %s: %w", t, err)
	}
	s := &SQLiteStore{db: db, table: t}
	s.cl.start(cfg, "sqlite", s.DeleteExpired)
	return s, nil
}

// FindCtx returns the unexpired data stored under key.
func (s *SQLiteStore) FindCtx(ctx context.Context, key string) ([]byte, bool, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, `SELECT data FROM `+s.table+` WHERE token = ? AND expiry > ?`, key, julianDay(time.Now())).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("session: sqlite find: %w", err)
	}
	return b, true, nil
}

// CommitCtx stores b under key until expiry.
func (s *SQLiteStore) CommitCtx(ctx context.Context, key string, b []byte, expiry time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO `+s.table+` (token, data, expiry) VALUES (?, ?, ?)
ON CONFLICT(token) DO UPDATE SET data = excluded.data, expiry = excluded.expiry`, key, b, julianDay(expiry))
	if err != nil {
		return fmt.Errorf("session: sqlite commit: %w", err)
	}
	return nil
}

// CreateCtx stores b under key unless an unexpired session is there
// (ErrExists). An expired row is replaced.
func (s *SQLiteStore) CreateCtx(ctx context.Context, key string, b []byte, expiry time.Time) error {
	res, err := s.db.ExecContext(ctx, `INSERT INTO `+s.table+` (token, data, expiry) VALUES (?, ?, ?)
ON CONFLICT(token) DO UPDATE SET data = excluded.data, expiry = excluded.expiry WHERE `+s.table+`.expiry <= ?`,
		key, b, julianDay(expiry), julianDay(time.Now()))
	if err != nil {
		return fmt.Errorf("session: sqlite create: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("session: sqlite create: %w", err)
	} else if n == 0 {
		return fmt.Errorf("%w: %q", ErrExists, key)
	}
	return nil
}

// DeleteCtx removes key; a missing key is not an error.
func (s *SQLiteStore) DeleteCtx(ctx context.Context, key string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM `+s.table+` WHERE token = ?`, key); err != nil {
		return fmt.Errorf("session: sqlite delete: %w", err)
	}
	return nil
}

// DeleteExpired deletes expired sessions and returns how many.
func (s *SQLiteStore) DeleteExpired(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM `+s.table+` WHERE expiry <= ?`, julianDay(time.Now()))
	if err != nil {
		return 0, fmt.Errorf("session: sqlite delete expired: %w", err)
	}
	return res.RowsAffected()
}

// Close stops the cleanup goroutine, and closes the database when the store
// opened it.
func (s *SQLiteStore) Close() error {
	s.cl.close()
	if s.owned {
		return s.db.Close()
	}
	return nil
}

// Find implements scs.Store.
func (s *SQLiteStore) Find(key string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), key)
}

// Commit implements scs.Store.
func (s *SQLiteStore) Commit(key string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), key, b, expiry)
}

// Delete implements scs.Store.
func (s *SQLiteStore) Delete(key string) error { return s.DeleteCtx(context.Background(), key) }

// PostgresStore is a Store in a PostgreSQL table, through pgx. It keeps a
// small pool of connections (SQLConfig.MaxConns). It is safe for concurrent
// use, also by several processes; its methods block on the database.
type PostgresStore struct {
	pool  *sqldb.Pool
	table string
	cl    cleaner
}

// OpenPostgres connects to the database at url (a postgres:// URL), creates
// the table when missing, and returns a store whose Close closes its
// connections.
func OpenPostgres(ctx context.Context, url string, cfg SQLConfig) (*PostgresStore, error) {
	t, err := cfg.table()
	if err != nil {
		return nil, err
	}
	max := cfg.MaxConns
	if max <= 0 {
		max = 4
	}
	pool, err := sqldb.NewPool(url, max, errPoolClosed)
	if err != nil {
		return nil, fmt.Errorf("session: postgres url: %w", err)
	}
	s := &PostgresStore{pool: pool, table: t}
	err = s.exec(ctx, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+t+` (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL)`); err != nil {
			return err
		}
		_, err := c.Exec(ctx, `CREATE INDEX IF NOT EXISTS `+t+`_expiry_idx ON `+t+` (expiry)`)
		return err
	})
	if err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("session: create table %s: %w", t, err)
	}
	s.cl.start(cfg, "postgres", s.DeleteExpired)
	return s, nil
}

func (s *PostgresStore) exec(ctx context.Context, fn func(*pgx.Conn) error) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	err = fn(c)
	// A connection whose error is not an SQL error or no rows may be
	// broken: it is closed rather than reused.
	var pgErr *pgconn.PgError
	if err != nil && !errors.As(err, &pgErr) && !errors.Is(err, pgx.ErrNoRows) {
		s.pool.Discard(c)
	} else {
		s.pool.Release(c)
	}
	return err
}

// FindCtx returns the unexpired data stored under key.
func (s *PostgresStore) FindCtx(ctx context.Context, key string) ([]byte, bool, error) {
	var b []byte
	err := s.exec(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT data FROM `+s.table+` WHERE token = $1 AND expiry > now()`, key).Scan(&b)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("session: postgres find: %w", err)
	}
	return b, true, nil
}

// CommitCtx stores b under key until expiry.
func (s *PostgresStore) CommitCtx(ctx context.Context, key string, b []byte, expiry time.Time) error {
	err := s.exec(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO `+s.table+` (token, data, expiry) VALUES ($1, $2, $3)
ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, expiry = EXCLUDED.expiry`, key, b, expiry)
		return err
	})
	if err != nil {
		return fmt.Errorf("session: postgres commit: %w", err)
	}
	return nil
}

// CreateCtx stores b under key unless an unexpired session is there
// (ErrExists). An expired row is replaced.
func (s *PostgresStore) CreateCtx(ctx context.Context, key string, b []byte, expiry time.Time) error {
	var n int64
	err := s.exec(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `INSERT INTO `+s.table+` AS t (token, data, expiry) VALUES ($1, $2, $3)
ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, expiry = EXCLUDED.expiry WHERE t.expiry <= now()`, key, b, expiry)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("session: postgres create: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %q", ErrExists, key)
	}
	return nil
}

// DeleteCtx removes key; a missing key is not an error.
func (s *PostgresStore) DeleteCtx(ctx context.Context, key string) error {
	err := s.exec(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `DELETE FROM `+s.table+` WHERE token = $1`, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("session: postgres delete: %w", err)
	}
	return nil
}

// DeleteExpired deletes expired sessions and returns how many.
func (s *PostgresStore) DeleteExpired(ctx context.Context) (int64, error) {
	var n int64
	err := s.exec(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `DELETE FROM `+s.table+` WHERE expiry <= now()`)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("session: postgres delete expired: %w", err)
	}
	return n, nil
}

// Close stops the cleanup goroutine and closes the connections.
func (s *PostgresStore) Close() error {
	s.cl.close()
	s.pool.Close()
	return nil
}

// Find implements scs.Store.
func (s *PostgresStore) Find(key string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), key)
}

// Commit implements scs.Store.
func (s *PostgresStore) Commit(key string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), key, b, expiry)
}

// Delete implements scs.Store.
func (s *PostgresStore) Delete(key string) error { return s.DeleteCtx(context.Background(), key) }

var errPoolClosed = errors.New("session: postgres store closed")
