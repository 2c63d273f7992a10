package delay

import (
	"context"
	"database/sql"
	"time"

	"github.com/gochannels/channels/internal/sqldb"
	"github.com/jackc/pgx/v5"
)

// database is what a Store needs from its database: database/sql for
// SQLite, and for PostgreSQL a small pool of pgx connections (pgx's own pool
// and its database/sql driver need a module this project does not carry).
type database interface {
	begin(ctx context.Context) (dbTx, error)
	exec(ctx context.Context, q string, args ...any) (int64, error)
	queryRow(ctx context.Context, q string, args ...any) scanner
	ping(ctx context.Context) error
	close() error
}

type dbTx interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	query(ctx context.Context, q string, args ...any) (dbRows, error)
	queryRow(ctx context.Context, q string, args ...any) scanner
	commit(ctx context.Context) error
	rollback()
}

type (
	dbRows  = sqldb.Rows
	scanner = sqldb.Scanner
)

// sqlDB adapts database/sql.
type sqlDB struct{ db *sql.DB }

func (d sqlDB) begin(ctx context.Context) (dbTx, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return sqlTx{tx}, nil
}

func (d sqlDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := d.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (d sqlDB) queryRow(ctx context.Context, q string, args ...any) scanner {
	return d.db.QueryRowContext(ctx, q, args...)
}

func (d sqlDB) ping(ctx context.Context) error { return d.db.PingContext(ctx) }
func (d sqlDB) close() error                   { return d.db.Close() }

type sqlTx struct{ tx *sql.Tx }

func (t sqlTx) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := t.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t sqlTx) query(ctx context.Context, q string, args ...any) (dbRows, error) {
	rows, err := t.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqldb.SQLRows{Rows: rows}, nil
}

func (t sqlTx) queryRow(ctx context.Context, q string, args ...any) scanner {
	return t.tx.QueryRowContext(ctx, q, args...)
}

func (t sqlTx) commit(context.Context) error { return t.tx.Commit() }
func (t sqlTx) rollback()                    { _ = t.tx.Rollback() }

// pgDB is a pool of pgx connections (see sqldb.Pool) as a database.
type pgDB struct{ *sqldb.Pool }

func newPGDB(url string, size int) (pgDB, error) {
	p, err := sqldb.NewPool(url, size, ErrStoreClosed)
	return pgDB{p}, err
}

func (p pgDB) begin(ctx context.Context) (dbTx, error) {
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		p.Release(c)
		return nil, err
	}
	return &pgTx{tx: tx, c: c, p: p.Pool}, nil
}

func (p pgDB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return p.Exec(ctx, q, args...)
}

func (p pgDB) queryRow(ctx context.Context, q string, args ...any) scanner {
	return p.QueryRow(ctx, q, args...)
}

func (p pgDB) ping(ctx context.Context) error { return p.Ping(ctx) }

func (p pgDB) close() error {
	p.Close()
	return nil
}

type pgTx struct {
	tx   pgx.Tx
	c    *pgx.Conn
	p    *sqldb.Pool
	done bool
}

func (t *pgTx) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (t *pgTx) query(ctx context.Context, q string, args ...any) (dbRows, error) {
	return t.tx.Query(ctx, q, args...)
}

func (t *pgTx) queryRow(ctx context.Context, q string, args ...any) scanner {
	return t.tx.QueryRow(ctx, q, args...)
}

func (t *pgTx) commit(ctx context.Context) error {
	err := t.tx.Commit(ctx)
	t.finish()
	return err
}

func (t *pgTx) rollback() {
	if t.done {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.tx.Rollback(ctx)
	t.finish()
}

func (t *pgTx) finish() {
	if !t.done {
		t.done = true
		t.p.Release(t.c)
	}
}
