// Package sqldb is the database plumbing shared by the packages that keep
// state in SQL (delay, binding, session): the choice between PostgreSQL and
// SQLite from a URL, the SQLite connection string, '?' placeholders
// rebound for PostgreSQL, and a small bounded pool of pgx connections
// (pgx's own pool and its database/sql driver need a module this project
// does not carry).
package sqldb

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// IsPostgres reports whether u names a PostgreSQL database: it starts with
// "postgres://" or "postgresql://".
func IsPostgres(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// Redact returns the URL u without its password, for logs and String
// methods.
func Redact(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	return pu.Redacted()
}

// SQLitePath turns a SQLite URL ("sqlite:///abs.db", "sqlite://rel.db",
// "sqlite3://…", "sqlite:rel.db") or a plain file path into a file path.
// memory is true, and path empty, for ":memory:" in any of these forms. The
// errors carry no package prefix: the caller adds its own.
func SQLitePath(u string) (path string, memory bool, err error) {
	p := u
	for _, pre := range []string{"sqlite://", "sqlite3://", "sqlite:"} {
		if strings.HasPrefix(p, pre) {
			p = strings.TrimPrefix(p, pre)
			break
		}
	}
	switch {
	case p == ":memory:":
		return "", true, nil
	case p == "":
		return "", false, fmt.Errorf("database URL %q names no file", u)
	case strings.ContainsAny(p, "?#") || strings.Contains(p, "://"):
		return "", false, fmt.Errorf("database URL %q: use postgres://..., sqlite:///path/to/file.db or a file path", u)
	}
	return p, false, nil
}

// SQLiteDSN is the modernc.org/sqlite data source name for the file at
// path (or ":memory:"): transactions take the write lock when they begin
// (BEGIN IMMEDIATE), a write waits up to busy for another connection's
// lock, the journal is WAL, and synchronous is set to synchronous ("FULL",
// "NORMAL", …).
func SQLiteDSN(path string, busy time.Duration, synchronous string) string {
	return path + "?_txlock=immediate&_pragma=" + url.QueryEscape(fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds())) +
		"&_pragma=journal_mode(WAL)&_pragma=" + url.QueryEscape("synchronous("+synchronous+")")
}

// Rebind turns every '?' in q into $1, $2, … for PostgreSQL. Every '?'
// is, even one inside a string literal or comment.
func Rebind(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// ValidPrefix reports whether p may be put before table names: 1 to 40
// lower-case letters, digits and '_', starting with a letter or '_'.
func ValidPrefix(p string) bool {
	if len(p) > 40 || p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch {
		case b >= 'a' && b <= 'z', b == '_':
		case b >= '0' && b <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// IsNoRows reports whether err says a query returned no row, from
// database/sql or pgx.
func IsNoRows(err error) bool {
	return errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows)
}

// Scanner reads one row: *sql.Row, pgx.Row, and what Pool.QueryRow
// returns.
type Scanner interface{ Scan(dest ...any) error }

// Rows is a result set: pgx.Rows, and *sql.Rows as SQLRows.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// SQLRows makes *sql.Rows a Rows: its Close drops the error, which Err
// reports.
type SQLRows struct{ *sql.Rows }

// Close closes the rows.
func (r SQLRows) Close() { _ = r.Rows.Close() }
