package binding_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gochannels/channels/binding"
)

// Query reads rows through the DB's own handle on both databases, with '?'
// placeholders, and gives its connection back when the rows end or close.
func TestQuery(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		if _, err := e.db.Exec(ctx, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, n INTEGER NOT NULL)"); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 5; i++ {
			if _, err := e.db.Exec(ctx, "INSERT INTO notes (id, body, n) VALUES (?, ?, ?)", i, "note ?", i*10); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := e.db.Query(ctx, "SELECT id, body, n FROM notes WHERE n >= ? AND n <= ? ORDER BY id DESC", 20, 40)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for rows.Next() {
			var (
				id, n int64
				body  string
			)
			if err := rows.Scan(&id, &body, &n); err != nil {
				t.Fatal(err)
			}
			if body != "note ?" || n != id*10 {
				t.Errorf("row %d: body %q, n %d", id, body, n)
			}
			got = append(got, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if len(got) != 3 || got[0] != 4 || got[1] != 3 || got[2] != 2 {
			t.Errorf("ids %v, want [4 3 2]", got)
		}

		// More queries than the DB has connections: rows read to the
		// end, or closed after one row, give theirs back.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for i := range 20 {
			rows, err := e.db.Query(wctx, "SELECT id FROM notes ORDER BY id")
			if err != nil {
				t.Fatalf("query %d: %v", i, err)
			}
			if i%2 == 0 {
				for rows.Next() {
				}
			} else {
				rows.Next()
				rows.Close()
			}
		}
		if n, err := e.db.Exec(wctx, "UPDATE notes SET n = n + 1 WHERE id = ?", 1); err != nil || n != 1 {
			t.Fatalf("Exec after the queries: %d, %v", n, err)
		}

		rows, err = e.db.Query(ctx, "SELECT nothing FROM notes")
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
			rows.Close()
		}
		if err == nil {
			t.Error("a query of a missing column gave no error")
		}

		e.db.Close()
		if _, err := e.db.Query(ctx, "SELECT 1"); !errors.Is(err, binding.ErrClosed) {
			t.Errorf("Query after Close: %v, want ErrClosed", err)
		}
	})
}
