package delay

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

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

type dbRows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

type scanner interface{ Scan(dest ...any) error }

func isNoRows(err error) bool {
	return errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows)
}

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
	return sqlRows{rows}, nil
}

func (t sqlTx) queryRow(ctx context.Context, q string, args ...any) scanner {
	return t.tx.QueryRowContext(ctx, q, args...)
}

func (t sqlTx) commit(context.Context) error { return t.tx.Commit() }
func (t sqlTx) rollback()                    { _ = t.tx.Rollback() }

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

// pgPool is a bounded pool of pgx connections. Connections that broke, or
// that are returned inside a transaction, are closed instead of reused.
type pgPool struct {
	cfg   *pgx.ConnConfig
	slots chan struct{} // one per connection in use

	mu     sync.Mutex
	idle   []idleConn
	closed bool
}

type idleConn struct {
	c     *pgx.Conn
	since time.Time
}

// pgIdleCheck is how long a connection may sit idle before it is pinged on
// reuse (the server or a proxy may have closed it).
const pgIdleCheck = 30 * time.Second

func newPGPool(url string, size int) (*pgPool, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	return &pgPool{cfg: cfg, slots: make(chan struct{}, size)}, nil
}

func (p *pgPool) acquire(ctx context.Context) (*pgx.Conn, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			<-p.slots
			return nil, ErrStoreClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		ic := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if ic.c.IsClosed() {
			continue
		}
		if time.Since(ic.since) > pgIdleCheck {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := ic.c.Ping(pctx)
			cancel()
			if err != nil {
				closeConn(ic.c)
				continue
			}
		}
		return ic.c, nil
	}
	c, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return c, nil
}

func (p *pgPool) release(c *pgx.Conn) {
	defer func() { <-p.slots }()
	if c.IsClosed() || c.PgConn().TxStatus() != 'I' {
		closeConn(c)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		closeConn(c)
		return
	}
	p.idle = append(p.idle, idleConn{c, time.Now()})
	p.mu.Unlock()
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

func (p *pgPool) begin(ctx context.Context) (dbTx, error) {
	c, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		p.release(c)
		return nil, err
	}
	return &pgTx{tx: tx, c: c, p: p}, nil
}

func (p *pgPool) exec(ctx context.Context, q string, args ...any) (int64, error) {
	c, err := p.acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer p.release(c)
	tag, err := c.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (p *pgPool) queryRow(ctx context.Context, q string, args ...any) scanner {
	c, err := p.acquire(ctx)
	if err != nil {
		return errScanner{err}
	}
	return &pgRow{row: c.QueryRow(ctx, q, args...), done: func() { p.release(c) }}
}

func (p *pgPool) ping(ctx context.Context) error {
	c, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(c)
	return c.Ping(ctx)
}

func (p *pgPool) close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, ic := range idle {
		closeConn(ic.c)
	}
	return nil
}

type pgTx struct {
	tx   pgx.Tx
	c    *pgx.Conn
	p    *pgPool
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
		t.p.release(t.c)
	}
}

type pgRow struct {
	row  pgx.Row
	done func()
}

func (r *pgRow) Scan(dest ...any) error {
	defer r.done()
	return r.row.Scan(dest...)
}

type errScanner struct{ err error }

func (e errScanner) Scan(...any) error { return fmt.Errorf("%w", e.err) }
