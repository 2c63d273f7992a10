package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/gochannels/channels/binding"
)

// scan reads the current row's columns into dest.
type scan func(dest ...any) error

// reader runs the board's queries ('?' placeholders), calling row for each
// row of the result.
type reader interface {
	query(ctx context.Context, q string, args []any, row func(scan) error) error
	close()
}

// newReader reads through db's own handle on SQLite, and through one pgx
// connection of its own on PostgreSQL (binding.DB writes but does not read
// there).
func newReader(ctx context.Context, db *binding.DB, dbURL string) (reader, error) {
	if !db.Postgres() {
		return sqliteReader{db}, nil
	}
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("board: connect to PostgreSQL: %w", err)
	}
	return &pgReader{url: dbURL, c: c}, nil
}

type sqliteReader struct{ db *binding.DB }

func (r sqliteReader) query(ctx context.Context, q string, args []any, row func(scan) error) error {
	rows, err := r.db.SQL().QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (sqliteReader) close() {}

// pgReader is one connection, used by one query at a time, and dialled
// again when it breaks.
type pgReader struct {
	url string
	mu  sync.Mutex
	c   *pgx.Conn
}

func (r *pgReader) query(ctx context.Context, q string, args []any, row func(scan) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == nil || r.c.IsClosed() {
		c, err := pgx.Connect(ctx, r.url)
		if err != nil {
			return err
		}
		r.c = c
	}
	rows, err := r.c.Query(ctx, rebind(q), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (r *pgReader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c != nil {
		_ = r.c.Close(context.Background())
	}
}

// rebind turns ? placeholders into $1, $2, ….
func rebind(q string) string {
	var b strings.Builder
	n := 0
	for _, part := range strings.Split(q, "?") {
		if n > 0 {
			b.WriteString("$" + strconv.Itoa(n))
		}
		b.WriteString(part)
		n++
	}
	return b.String()
}
