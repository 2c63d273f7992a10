package sqldb

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// IdleCheck is how long a connection may sit idle in a Pool before it is
// pinged on reuse (the server or a proxy may have closed it).
const IdleCheck = 30 * time.Second

// Pool is a bounded pool of pgx connections. Connections that broke, or
// that are returned inside a transaction, are closed instead of reused. It
// is safe for concurrent use.
type Pool struct {
	cfg       *pgx.ConnConfig
	closedErr error
	slots     chan struct{} // one per connection in use

	mu     sync.Mutex
	idle   []idleConn
	closed bool
}

type idleConn struct {
	c     *pgx.Conn
	since time.Time
}

// NewPool returns a pool of at most size connections to the PostgreSQL
// database at url (any form pgx.ParseConfig accepts), which dials none
// until one is needed. Acquire returns closedErr after Close. The error is
// pgx's, without a prefix.
func NewPool(url string, size int, closedErr error) (*Pool, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	return &Pool{cfg: cfg, closedErr: closedErr, slots: make(chan struct{}, max(size, 1))}, nil
}

// Config returns a copy of the pool's connection settings, to open
// connections outside the pool (for LISTEN, say).
func (p *Pool) Config() *pgx.ConnConfig { return p.cfg.Copy() }

// Acquire returns an idle connection, pinging it first when it has been
// idle longer than IdleCheck, or dials a new one; it waits while size
// connections are in use. Each connection it returns must be given back
// with Release or Discard.
func (p *Pool) Acquire(ctx context.Context) (*pgx.Conn, error) {
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
			return nil, p.closedErr
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
		if time.Since(ic.since) > IdleCheck {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := ic.c.Ping(pctx)
			cancel()
			if err != nil {
				CloseConn(ic.c)
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

// Release gives c back to the pool: it is kept for reuse unless it is
// closed, inside a transaction, or the pool is closed.
func (p *Pool) Release(c *pgx.Conn) {
	defer func() { <-p.slots }()
	if c.IsClosed() || c.PgConn().TxStatus() != 'I' {
		CloseConn(c)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		CloseConn(c)
		return
	}
	p.idle = append(p.idle, idleConn{c, time.Now()})
	p.mu.Unlock()
}

// Discard gives c back to the pool closed, for a connection that failed.
func (p *Pool) Discard(c *pgx.Conn) {
	defer func() { <-p.slots }()
	CloseConn(c)
}

// Close closes the idle connections and makes Acquire fail; connections in
// use are closed when they are given back. It is safe to call more than
// once.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, ic := range idle {
		CloseConn(ic.c)
	}
}

// CloseConn closes c, waiting at most 2 s for the server to hear of it.
func CloseConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// Exec runs a statement ($n placeholders) on a pooled connection and
// returns the number of rows it affected.
func (p *Pool) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	c, err := p.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer p.Release(c)
	tag, err := c.Exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// QueryRow runs a query returning one row on a pooled connection, given
// back when the row is scanned. An error acquiring the connection is
// returned by Scan.
func (p *Pool) QueryRow(ctx context.Context, q string, args ...any) Scanner {
	c, err := p.Acquire(ctx)
	if err != nil {
		return errScanner{err}
	}
	return pgRow{c.QueryRow(ctx, q, args...), func() { p.Release(c) }}
}

// Query runs a query on a pooled connection, given back when the rows are
// closed (Close, or Next returning false).
func (p *Pool) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		p.Release(c)
		return nil, err
	}
	return &pgRows{Rows: rows, release: func() { p.Release(c) }}, nil
}

// Ping checks that the database answers on a pooled connection.
func (p *Pool) Ping(ctx context.Context) error {
	c, err := p.Acquire(ctx)
	if err != nil {
		return err
	}
	defer p.Release(c)
	return c.Ping(ctx)
}

type pgRow struct {
	row  pgx.Row
	done func()
}

func (r pgRow) Scan(dest ...any) error {
	defer r.done()
	return r.row.Scan(dest...)
}

type errScanner struct{ err error }

func (e errScanner) Scan(...any) error { return e.err }

// pgRows gives its connection back once, when it closes.
type pgRows struct {
	pgx.Rows
	release func()
}

func (r *pgRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *pgRows) Close() {
	r.Rows.Close()
	if r.release != nil {
		r.release()
		r.release = nil
	}
}
