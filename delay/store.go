package delay

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/normal"
	"github.com/gochannels/channels/internal/sqldb"
	"github.com/gochannels/channels/internal/wire"
	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DefaultTablePrefix is put before the store's table names when
// StoreConfig.TablePrefix is empty: the tables are "channels_delay" and
// "channels_delay_schema".
const DefaultTablePrefix = "channels_"

// SchemaVersion is the version of the tables this package creates and
// expects. Open migrates older tables up to it and refuses newer ones.
const SchemaVersion = 1

// outcomeTimeout bounds the recording of sends that have already happened.
const outcomeTimeout = 10 * time.Second

// ErrStoreClosed is returned by a Store's methods after Close.
var ErrStoreClosed = errors.New("delay: store closed")

// StoreConfig says which database a Store uses. Only URL is required.
type StoreConfig struct {
	// URL names the database:
	//
	//   - "postgres://user@host:5432/db?sslmode=disable" (or postgresql://)
	//     for PostgreSQL, in any form pgx accepts;
	//   - "sqlite:///var/lib/app/delay.db" (an absolute path),
	//     "sqlite://delay.db" or "sqlite:delay.db" (relative), or a plain
	//     file path, for SQLite; the file is created when missing;
	//   - ":memory:" (or "sqlite::memory:") for a SQLite database that
	//     lives in memory and is lost when the Store closes: development
	//     only, it logs a warning.
	URL string

	// TablePrefix is put before the names of the store's two tables,
	// "<prefix>delay" (the messages) and "<prefix>delay_schema" (the schema
	// version). Lower-case letters, digits and '_', starting with a letter
	// or '_', at most 40 characters. Empty means DefaultTablePrefix. Tests
	// use a random prefix each.
	TablePrefix string

	// SQLiteSynchronous is SQLite's synchronous setting: "FULL" (the
	// default) makes every commit survive a power failure; "NORMAL" makes
	// commits faster and still survive a crash of the process, but the last
	// commits before a power failure or an operating-system crash can be
	// lost. Ignored for PostgreSQL.
	SQLiteSynchronous string

	// BusyTimeout is how long SQLite waits for another process's write
	// lock before an operation fails. Zero means 10 s. Ignored for
	// PostgreSQL.
	BusyTimeout time.Duration

	// Logger receives the store's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// Record is one scheduled message as the store holds it.
type Record struct {
	// ID identifies the message; it is unique in the store and is delivered
	// under IDKey.
	ID string
	// Channel is where the message goes when it is due.
	Channel string
	// Content is the message to deliver, in normal form (see
	// normal.Normalize). The store keeps bytes as bytes and text as text.
	Content channels.Content
	// Due is when the message is to be sent. The store keeps microseconds.
	Due time.Time
	// Keep keeps the ID in the store for a while after delivery (until
	// Purge removes it), so that adding a record with the same ID again
	// does nothing. The server sets it for IDs chosen by the producer,
	// which may send the same request more than once (SendConfirmed).
	Keep bool
	// Attempts counts the sends of this message that failed and were
	// rescheduled. Add ignores it.
	Attempts int
}

// DueFunc sends due records. It returns, for each record, when to try it
// again: the zero time removes the record (it was sent, or can never be
// sent). The slice must have the length of due.
type DueFunc func(ctx context.Context, due []Record) (retryAt []time.Time)

// Store keeps scheduled messages in a SQL database: SQLite (embedded) or
// PostgreSQL. It creates and migrates its own tables. A Store is safe for
// concurrent use by several goroutines, and several stores (in several
// processes) may share one database and table prefix: Deliver hands each due
// message to only one of them at a time.
type Store struct {
	db       database
	pgDB     pgDB
	pg       bool
	display  string
	table    string
	schema   string
	notifyCh string
	log      *slog.Logger
	closed   atomic.Bool

	qInsertRow  string // "(?, ?, ?, ?, ?)" rebound per row
	qClaim      string
	qNextDue    string
	qPending    string
	qPurge      string
	qReschedule string
}

// Open opens the store named by url with the default table prefix,
// creating or migrating its tables; see StoreConfig.URL for the forms of
// url. It blocks while it connects and migrates.
func Open(ctx context.Context, url string) (*Store, error) {
	return OpenStore(ctx, StoreConfig{URL: url})
}

// OpenStore opens the store cfg describes, creating or migrating its tables
// (idempotently, under a lock, so several processes may open one database at
// once). It blocks while it connects and migrates.
func OpenStore(ctx context.Context, cfg StoreConfig) (*Store, error) {
	prefix := cfg.TablePrefix
	if prefix == "" {
		prefix = DefaultTablePrefix
	}
	if !sqldb.ValidPrefix(prefix) {
		return nil, fmt.Errorf("delay: table prefix %q: use lower-case letters, digits and '_', starting with a letter or '_', at most 40 characters", prefix)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Store{
		table:    prefix + "delay",
		schema:   prefix + "delay_schema",
		notifyCh: prefix + "delay",
		log:      log,
	}
	var err error
	switch {
	case sqldb.IsPostgres(cfg.URL):
		s.pg = true
		s.display = sqldb.Redact(cfg.URL)
		s.pgDB, err = newPGDB(cfg.URL, 8)
		if err != nil {
			return nil, fmt.Errorf("delay: open %s: %w", s.display, err)
		}
		s.db = s.pgDB
	default:
		path, memory, perr := sqldb.SQLitePath(cfg.URL)
		if perr != nil {
			return nil, fmt.Errorf("delay: %w", perr)
		}
		sync := strings.ToUpper(cfg.SQLiteSynchronous)
		switch sync {
		case "":
			sync = "FULL"
		case "FULL", "NORMAL", "EXTRA":
		case "OFF":
			log.Warn("delay: SQLite synchronous=OFF: a power failure or operating-system crash can lose or corrupt scheduled messages")
		default:
			return nil, fmt.Errorf("delay: SQLiteSynchronous %q: use FULL or NORMAL", cfg.SQLiteSynchronous)
		}
		busy := cfg.BusyTimeout
		if busy <= 0 {
			busy = 10 * time.Second
		}
		s.display = "sqlite:" + path
		if memory {
			log.Warn("delay: the SQLite store is in memory; scheduled messages are lost when the process stops")
			path = ":memory:"
			s.display = "sqlite::memory:"
		}
		db, err := sql.Open("sqlite", sqldb.SQLiteDSN(path, busy, sync))
		if err != nil {
			return nil, fmt.Errorf("delay: open %s: %w", s.display, err)
		}
		// One connection: SQLite has one writer at a time anyway, and
		// an in-memory database exists only on its connection.
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
		s.db = sqlDB{db}
	}
	s.prepareQueries()
	if err := s.db.ping(ctx); err != nil {
		s.db.close()
		return nil, fmt.Errorf("delay: connect to %s: %w", s.display, err)
	}
	if !s.pg && !strings.Contains(s.display, ":memory:") {
		var mode string
		if err := s.db.queryRow(ctx, "PRAGMA journal_mode").Scan(&mode); err == nil && !strings.EqualFold(mode, "wal") {
			log.Warn("delay: SQLite is not in WAL mode; readers and the writer will block each other", "journal_mode", mode)
		}
	}
	if err := s.migrate(ctx); err != nil {
		s.db.close()
		return nil, err
	}
	return s, nil
}

// String returns the database URL without its password and the table name.
func (s *Store) String() string { return s.display + " table " + s.table }

// rebind turns ? placeholders into $n for PostgreSQL.
func (s *Store) rebind(q string) string {
	if !s.pg {
		return q
	}
	return sqldb.Rebind(q)
}

func (s *Store) prepareQueries() {
	t := s.table
	claim := "SELECT id, due_us, channel, content, keep, attempts FROM " + t +
		" WHERE sent_us IS NULL AND due_us <= ? ORDER BY due_us LIMIT ?"
	if s.pg {
		// Rows another store has claimed are skipped, not waited for:
		// each due message goes to exactly one store.
		claim += " FOR UPDATE SKIP LOCKED"
	}
	s.qClaim = s.rebind(claim)
	s.qNextDue = "SELECT MIN(due_us) FROM " + t + " WHERE sent_us IS NULL"
	s.qPending = "SELECT COUNT(*) FROM " + t + " WHERE sent_us IS NULL"
	s.qPurge = s.rebind("DELETE FROM " + t + " WHERE sent_us IS NOT NULL AND sent_us < ?")
	s.qReschedule = s.rebind("UPDATE " + t + " SET due_us = ?, attempts = attempts + 1 WHERE id = ?")
}

// migrations are the schema versions in order; each step is idempotent.
func (s *Store) migrations() [][]string {
	blob, bigint := "BLOB", "INTEGER"
	if s.pg {
		blob, bigint = "BYTEA", "BIGINT"
	}
	t := s.table
	return [][]string{
		// 1: the messages. due_us and sent_us are Unix microseconds;
		// sent_us is NULL until delivery, and only records with keep=1
		// stay after it (until purged).
		{
			"CREATE TABLE IF NOT EXISTS " + t + ` (
				id TEXT PRIMARY KEY,
				due_us ` + bigint + ` NOT NULL,
				channel TEXT NOT NULL,
				content ` + blob + ` NOT NULL,
				keep INTEGER NOT NULL DEFAULT 0,
				attempts INTEGER NOT NULL DEFAULT 0,
				sent_us ` + bigint + `
			)`,
			"CREATE INDEX IF NOT EXISTS " + t + "_due ON " + t + " (due_us) WHERE sent_us IS NULL",
			"CREATE INDEX IF NOT EXISTS " + t + "_sent ON " + t + " (sent_us) WHERE sent_us IS NOT NULL",
		},
	}
}

// migrate brings the tables to SchemaVersion in one transaction, holding a
// lock so that concurrent opens do not race.
func (s *Store) migrate(ctx context.Context) error {
	steps := s.migrations()
	tx, err := s.db.begin(ctx) // SQLite: BEGIN IMMEDIATE, the write lock
	if err != nil {
		return fmt.Errorf("delay: migrate %s: %w", s, err)
	}
	defer tx.rollback()
	if s.pg {
		if _, err := tx.exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "gochannels.delay."+s.table); err != nil {
			return fmt.Errorf("delay: migrate %s: lock: %w", s, err)
		}
	}
	if _, err := tx.exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.schema+" (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)"); err != nil {
		return fmt.Errorf("delay: migrate %s: %w", s, err)
	}
	var version int
	err = tx.queryRow(ctx, "SELECT version FROM "+s.schema+" WHERE id = 1").Scan(&version)
	if err != nil && !sqldb.IsNoRows(err) {
		return fmt.Errorf("delay: migrate %s: read schema version: %w", s, err)
	}
	if version > len(steps) {
		return fmt.Errorf("delay: %s has schema version %d, newer than this program's %d; upgrade the program", s, version, len(steps))
	}
	if version == len(steps) {
		return tx.commit(ctx)
	}
	for v := version; v < len(steps); v++ {
		for _, stmt := range steps[v] {
			if _, err := tx.exec(ctx, stmt); err != nil {
				return fmt.Errorf("delay: migrate %s to version %d: %w", s, v+1, err)
			}
		}
	}
	if _, err := tx.exec(ctx, s.rebind("INSERT INTO "+s.schema+" (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version"), len(steps)); err != nil {
		return fmt.Errorf("delay: migrate %s: write schema version: %w", s, err)
	}
	if err := tx.commit(ctx); err != nil {
		return fmt.Errorf("delay: migrate %s: %w", s, err)
	}
	s.log.Info("delay: store schema migrated", "store", s.String(), "from", version, "to", len(steps))
	return nil
}

// Version returns the schema version recorded in the database.
func (s *Store) Version(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, ErrStoreClosed
	}
	var v int
	if err := s.db.queryRow(ctx, "SELECT version FROM "+s.schema+" WHERE id = 1").Scan(&v); err != nil {
		return 0, fmt.Errorf("delay: read schema version: %w", err)
	}
	return v, nil
}

// Add stores records in one transaction and returns how many were new. A
// record whose ID is already in the store (scheduled, or delivered and kept)
// is left as it is and not counted. Content is normalised and encoded with
// msgpack, so bytes stay bytes. On PostgreSQL the transaction also notifies
// the other stores sharing the table (LISTEN/NOTIFY) of the earliest due
// time, so that a server whose timer is set later wakes up. Add blocks
// until the transaction commits: once it returns nil the records survive a
// crash of the process.
func (s *Store) Add(ctx context.Context, recs ...Record) (int, error) {
	if s.closed.Load() {
		return 0, ErrStoreClosed
	}
	if len(recs) == 0 {
		return 0, nil
	}
	var (
		q     strings.Builder
		args  = make([]any, 0, 5*len(recs))
		early = recs[0].Due
	)
	q.WriteString("INSERT INTO " + s.table + " (id, due_us, channel, content, keep) VALUES ")
	for i, r := range recs {
		if r.ID == "" {
			return 0, fmt.Errorf("delay: add: record %d has no ID", i)
		}
		c, _, err := normal.Normalize(r.Content)
		if err != nil {
			return 0, fmt.Errorf("delay: add %s: %w", r.ID, err)
		}
		b, err := wire.Marshal(c)
		if err != nil {
			return 0, fmt.Errorf("delay: add %s: %w", r.ID, err)
		}
		keep := 0
		if r.Keep {
			keep = 1
		}
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?, ?)")
		args = append(args, r.ID, r.Due.UnixMicro(), r.Channel, b, keep)
		if r.Due.Before(early) {
			early = r.Due
		}
	}
	q.WriteString(" ON CONFLICT (id) DO NOTHING")
	tx, err := s.db.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("delay: add: %w", err)
	}
	defer tx.rollback()
	n, err := tx.exec(ctx, s.rebind(q.String()), args...)
	if err != nil {
		return 0, fmt.Errorf("delay: add: %w", err)
	}
	if s.pg && n > 0 {
		if _, err := tx.exec(ctx, "SELECT pg_notify($1, $2)", s.notifyCh, strconv.FormatInt(early.UnixMicro(), 10)); err != nil {
			return 0, fmt.Errorf("delay: add: notify: %w", err)
		}
	}
	if err := tx.commit(ctx); err != nil {
		return 0, fmt.Errorf("delay: add: commit: %w", err)
	}
	return int(n), nil
}

// Deliver claims up to limit records due at now (earliest first), hands them
// to send, and then, in the same transaction, removes those send gives the
// zero time for (keeping the IDs of records with Keep) and reschedules the
// others. It returns how many records it claimed.
//
// While send runs the records stay claimed: on PostgreSQL they are locked
// FOR UPDATE SKIP LOCKED, so other stores skip them; on SQLite the store
// holds the database's write lock. If the process crashes before the
// transaction commits, the records are neither removed nor rescheduled and
// are delivered again later, with the same IDs.
//
// The outcome of the sends is recorded even when ctx ends while send runs,
// within a further 10 s. A stored record whose content cannot be decoded is
// removed with an error log and not handed to send. Deliver blocks until the
// transaction ends.
func (s *Store) Deliver(ctx context.Context, now time.Time, limit int, send DueFunc) (int, error) {
	if s.closed.Load() {
		return 0, ErrStoreClosed
	}
	if limit <= 0 {
		limit = 1
	}
	// The transaction outlives ctx by outcomeTimeout: once the sends have
	// happened their outcome must be recorded, or they would all be sent
	// again (database/sql rolls a transaction back when its context ends).
	txCtx := context.WithoutCancel(ctx)
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		txCtx, cancel = context.WithDeadline(txCtx, d.Add(outcomeTimeout))
		defer cancel()
	}
	tx, err := s.db.begin(txCtx)
	if err != nil {
		return 0, fmt.Errorf("delay: deliver: %w", err)
	}
	defer tx.rollback()
	rows, err := tx.query(ctx, s.qClaim, now.UnixMicro(), limit)
	if err != nil {
		return 0, fmt.Errorf("delay: deliver: claim: %w", err)
	}
	var (
		due []Record
		bad []string
	)
	for rows.Next() {
		var (
			r       Record
			dueUS   int64
			content []byte
			keep    int
		)
		if err := rows.Scan(&r.ID, &dueUS, &r.Channel, &content, &keep, &r.Attempts); err != nil {
			rows.Close()
			return 0, fmt.Errorf("delay: deliver: read: %w", err)
		}
		r.Due = time.UnixMicro(dueUS)
		r.Keep = keep != 0
		c, err := wire.Unmarshal(content)
		if err != nil {
			s.log.Error("delay: removing a stored message whose content cannot be decoded", "id", r.ID, "channel", r.Channel, "error", err)
			bad = append(bad, r.ID)
			continue
		}
		r.Content = c
		due = append(due, r)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return 0, fmt.Errorf("delay: deliver: read: %w", err)
	}
	rows.Close()
	claimed := len(due) + len(bad)
	if claimed == 0 {
		return 0, tx.commit(txCtx)
	}
	var retry []time.Time
	if len(due) > 0 {
		retry = send(ctx, due)
		if len(retry) != len(due) {
			return 0, fmt.Errorf("delay: deliver: send returned %d results for %d records", len(retry), len(due))
		}
	}
	ctx = txCtx // the sends have happened: record their outcome
	var remove, keep []string
	remove = append(remove, bad...)
	for i, r := range due {
		switch {
		case !retry[i].IsZero():
			if _, err := tx.exec(ctx, s.qReschedule, retry[i].UnixMicro(), r.ID); err != nil {
				return 0, fmt.Errorf("delay: deliver: reschedule: %w", err)
			}
		case r.Keep:
			keep = append(keep, r.ID)
		default:
			remove = append(remove, r.ID)
		}
	}
	if len(remove) > 0 {
		if _, err := tx.exec(ctx, s.rebind("DELETE FROM "+s.table+" WHERE id IN ("+placeholders(len(remove))+")"), anys(remove)...); err != nil {
			return 0, fmt.Errorf("delay: deliver: remove: %w", err)
		}
	}
	if len(keep) > 0 {
		args := append([]any{time.Now().UnixMicro()}, anys(keep)...)
		if _, err := tx.exec(ctx, s.rebind("UPDATE "+s.table+" SET sent_us = ? WHERE id IN ("+placeholders(len(keep))+")"), args...); err != nil {
			return 0, fmt.Errorf("delay: deliver: mark delivered: %w", err)
		}
	}
	if err := tx.commit(ctx); err != nil {
		return 0, fmt.Errorf("delay: deliver: commit: %w", err)
	}
	return claimed, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// NextDue returns the due time of the earliest scheduled record, and false
// when there is none.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	if s.closed.Load() {
		return time.Time{}, false, ErrStoreClosed
	}
	var us sql.NullInt64
	if err := s.db.queryRow(ctx, s.qNextDue).Scan(&us); err != nil {
		return time.Time{}, false, fmt.Errorf("delay: next due: %w", err)
	}
	if !us.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMicro(us.Int64), true, nil
}

// Pending returns the number of scheduled records (not yet delivered).
func (s *Store) Pending(ctx context.Context) (int, error) {
	if s.closed.Load() {
		return 0, ErrStoreClosed
	}
	var n int
	if err := s.db.queryRow(ctx, s.qPending).Scan(&n); err != nil {
		return 0, fmt.Errorf("delay: count pending: %w", err)
	}
	return n, nil
}

// Purge removes the kept IDs of records delivered before the given time and
// returns how many it removed.
func (s *Store) Purge(ctx context.Context, before time.Time) (int, error) {
	if s.closed.Load() {
		return 0, ErrStoreClosed
	}
	n, err := s.db.exec(ctx, s.qPurge, before.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("delay: purge: %w", err)
	}
	return int(n), nil
}

// Close closes the database connections. Calls in progress may fail. It is
// safe to call more than once.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.db.close(); err != nil {
		return fmt.Errorf("delay: close %s: %w", s, err)
	}
	return nil
}

// listen calls wake with the earliest due time of every batch another store
// (or this one) adds to the table, until ctx is done; and with the zero time
// after every (re)connection, when notifications may have been missed. It
// returns at once for SQLite, whose stores share a process or poll.
func (s *Store) listen(ctx context.Context, wake func(due time.Time)) {
	if !s.pg {
		return
	}
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		s.log.Warn("delay: LISTEN connection lost; reconnecting (other servers' inserts are noticed by polling meanwhile)", "store", s.String(), "error", err, "retry_in", backoff)
		if sleep(ctx, backoff) != nil {
			return
		}
	}
}

func (s *Store) listenOnce(ctx context.Context, wake func(time.Time)) error {
	conn, err := pgx.ConnectConfig(ctx, s.pgDB.Config())
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.notifyCh}.Sanitize()); err != nil {
		return err
	}
	wake(time.Time{})
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		us, err := strconv.ParseInt(n.Payload, 10, 64)
		if err != nil {
			wake(time.Time{})
			continue
		}
		wake(time.UnixMicro(us))
	}
}
