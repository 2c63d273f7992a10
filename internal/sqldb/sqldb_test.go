package sqldb

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/testenv"
)

func TestRebind(t *testing.T) {
	for q, want := range map[string]string{
		"SELECT 1":              "SELECT 1",
		"a = ? AND b IN (?, ?)": "a = $1 AND b IN ($2, $3)",
		"?":                     "$1",
		"'?' ?":                 "'$1' $2",
		"x??":                   "x$1$2",
		"? ? ? ? ? ? ? ? ? ? ?": "$1 $2 $3 $4 $5 $6 $7 $8 $9 $10 $11",
	} {
		if got := Rebind(q); got != want {
			t.Errorf("Rebind(%q) = %q, want %q", q, got, want)
		}
	}
}

func TestSQLitePath(t *testing.T) {
	for u, want := range map[string]string{
		"sqlite:///var/x.db": "/var/x.db",
		"sqlite://x.db":      "x.db",
		"sqlite3://x.db":     "x.db",
		"sqlite:x.db":        "x.db",
		"/tmp/x.db":          "/tmp/x.db",
	} {
		if got, mem, err := SQLitePath(u); got != want || mem || err != nil {
			t.Errorf("SQLitePath(%q) = %q, %v, %v; want %q", u, got, mem, err, want)
		}
	}
	for _, u := range []string{":memory:", "sqlite::memory:", "sqlite://:memory:"} {
		if _, mem, err := SQLitePath(u); !mem || err != nil {
			t.Errorf("SQLitePath(%q): memory %v, error %v; want an in-memory database", u, mem, err)
		}
	}
	for _, u := range []string{"", "sqlite:", "sqlite://x.db?mode=ro", "x.db#f", "mysql://h/db"} {
		if _, _, err := SQLitePath(u); err == nil {
			t.Errorf("SQLitePath(%q) gave no error", u)
		}
	}
}

func TestValidPrefixAndRedact(t *testing.T) {
	for p, want := range map[string]bool{"channels_": true, "_a1": true, "": false, "1a": false, "A": false, "a-b": false, "a234567890123456789012345678901234567890": true, "a2345678901234567890123456789012345678901": false} {
		if ValidPrefix(p) != want {
			t.Errorf("ValidPrefix(%q) = %v, want %v", p, !want, want)
		}
	}
	if got := Redact("postgres://u:secret@h/db"); got != "postgres://u:xxxxx@h/db" {
		t.Errorf("Redact = %q", got)
	}
}

// The pool reuses a returned connection, dials a new one for a discarded
// one, bounds the connections in use, and fails with the caller's error
// once closed.
func TestPool(t *testing.T) {
	url := testenv.DatabaseURL(t)
	errClosed := errors.New("test: closed")
	p, err := NewPool(url, 1, errClosed)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.PgConn().PID()
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	if _, err := p.Acquire(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Acquire on a pool of one: %v, want to wait until the context ends", err)
	}
	cancel()
	p.Release(c)
	var got uint32
	if err := p.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&got); err != nil || got != pid {
		t.Errorf("after Release: backend %d (%v), want the same connection %d", got, err, pid)
	}
	c, err = p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Discard(c)
	if !c.IsClosed() {
		t.Error("Discard left the connection open")
	}
	rows, err := p.Query(ctx, "SELECT pg_backend_pid() FROM generate_series(1, $1)", 3)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(&got); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := rows.Err(); err != nil || n != 3 || got == pid {
		t.Errorf("Query after Discard: %d rows from backend %d (%v), want 3 from a new connection", n, got, err)
	}
	// The rows gave their connection back when Next returned false.
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if n, err := p.Exec(ectx, "SELECT 1"); err != nil || n != 1 {
		t.Errorf("Exec after the rows were read = %d, %v", n, err)
	}
	cancel()
	rows.Close()
	p.Close()
	if err := p.Ping(ctx); !errors.Is(err, errClosed) {
		t.Errorf("Ping after Close: %v, want the pool's closed error", err)
	}
}
