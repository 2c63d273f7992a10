package main

import (
	"context"

	"github.com/gochannels/channels/binding"
)

// scan reads the current row's columns into dest.
type scan func(dest ...any) error

// reader runs the board's queries ('?' placeholders) through the binding's
// database handle, on SQLite and PostgreSQL alike.
type reader struct{ db *binding.DB }

// query runs q, calling row for each row of the result.
func (r reader) query(ctx context.Context, q string, args []any, row func(scan) error) error {
	rows, err := r.db.Query(ctx, q, args...)
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
