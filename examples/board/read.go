package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

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

// newReader reads through db's own handle on SQLite, and through a few
// pgx connections of its own on PostgreSQL (binding.DB writes but does not
// read there).
func newReader(ctx context.Context, db *binding.DB, dbURL string) (reader, error) {
	if !db.Postgres() {
		return sqliteReader{db}, nil
	}
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	r := &pgReader{cfg: cfg, slots: make(chan *pgx.Conn, pgReaders)}
	for range pgReaders {
		r.slots <- nil // dialled on first use
	}
	return r, nil
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

// pgReaders is how many queries a pgReader runs at once.
const pgReaders = 4

// pgReader is a small pool of connections, each used by one query at a
// time and dialled again when it breaks.
type pgReader struct {
	cfg   *pgx.ConnConfig
	slots chan *pgx.Conn // a nil connection is a slot not dialled yet
}

func (r *pgReader) query(ctx context.Context, q string, args []any, row func(scan) error) error {
	var c *pgx.Conn
	select {
	case c = <-r.slots:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { r.slots <- c }()
	if c == nil || c.IsClosed() {
		var err error
		if c, err = pgx.ConnectConfig(ctx, r.cfg); err != nil {
			c = nil
			return err
		}
	}
	rows, err := c.Query(ctx, rebind(q), args...)
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
	for range pgReaders {
		if c := <-r.slots; c != nil {
			_ = c.Close(context.Background())
		}
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
