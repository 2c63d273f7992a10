package binding

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/gochannels/channels/internal/sqldb"
	"github.com/jackc/pgx/v5"
)

// SchemaVersion is the version of the tables this package creates and
// expects. Install migrates older tables up to it and refuses newer ones.
const SchemaVersion = 1

// triggerVersion is the version of the triggers' code; Install recreates
// triggers recorded with another version (or other columns, on SQLite).
const triggerVersion = 1

// Install creates, or brings up to date, what capturing the changes of the
// bindings' tables needs, in one transaction under a lock (several
// processes may install at once):
//
//   - <prefix>binding_outbox: one row per changed row (table, operation,
//     primary key as text, old and new row images as JSON, time), written
//     by the triggers in the writer's transaction;
//   - <prefix>binding_schema: the schema version;
//   - <prefix>binding_tables: the bound tables and their triggers' version;
//   - SQLite: <prefix>binding_lease, which relay is active, and on each
//     bound table the triggers <prefix>binding_<table>_insert, _update and
//     _delete;
//   - PostgreSQL: the function <prefix>binding_capture() and on each bound
//     table the trigger <prefix>binding_<table>.
//
// The bound tables must exist. SQLite's triggers name the table's columns,
// so run Install again after adding columns (Relay.Run does it when it
// starts). Install is idempotent.
func Install(ctx context.Context, db *DB, bindings ...Registration) error {
	tables, err := tablesOf(bindings)
	if err != nil {
		return err
	}
	return db.inTx(ctx, func(tx txn) error {
		if err := db.migrate(ctx, tx); err != nil {
			return err
		}
		for _, t := range tables {
			if err := db.installTable(ctx, tx, t.table, t.pk); err != nil {
				return fmt.Errorf("binding: install triggers on %s: %w", t.table, err)
			}
		}
		return nil
	})
}

// Uninstall removes the triggers of the bindings' tables and the changes of
// those tables still waiting in the outbox. When no bound table is left, it
// also drops the outbox and the other tables (and, on PostgreSQL, the
// function) Install created. The bound tables themselves are untouched.
func Uninstall(ctx context.Context, db *DB, bindings ...Registration) error {
	tables, err := tablesOf(bindings)
	if err != nil {
		return err
	}
	p := db.prefix
	return db.inTx(ctx, func(tx txn) error {
		if err := db.lock(ctx, tx); err != nil {
			return err
		}
		exists, err := db.tableExists(ctx, tx, p+"binding_tables")
		if err != nil || !exists {
			return err
		}
		for _, t := range tables {
			for _, stmt := range db.dropTriggers(t.table) {
				if err := tx.exec(ctx, stmt); err != nil {
					return fmt.Errorf("binding: uninstall %s: %w", t.table, err)
				}
			}
			if err := tx.exec(ctx, db.rebind("DELETE FROM "+p+"binding_tables WHERE tbl = ?"), t.table); err != nil {
				return fmt.Errorf("binding: uninstall %s: %w", t.table, err)
			}
			if err := tx.exec(ctx, db.rebind("DELETE FROM "+p+"binding_outbox WHERE tbl = ?"), t.table); err != nil {
				return fmt.Errorf("binding: uninstall %s: %w", t.table, err)
			}
		}
		var left int
		if err := tx.queryRow(ctx, "SELECT COUNT(*) FROM "+p+"binding_tables").Scan(&left); err != nil {
			return fmt.Errorf("binding: uninstall: %w", err)
		}
		if left > 0 {
			return nil
		}
		drops := []string{
			"DROP TABLE IF EXISTS " + p + "binding_outbox",
			"DROP TABLE IF EXISTS " + p + "binding_tables",
			"DROP TABLE IF EXISTS " + p + "binding_schema",
			"DROP TABLE IF EXISTS " + p + "binding_lease",
		}
		if db.pg {
			drops = append(drops, "DROP FUNCTION IF EXISTS "+p+"binding_capture()")
		}
		for _, stmt := range drops {
			if err := tx.exec(ctx, stmt); err != nil {
				return fmt.Errorf("binding: uninstall: %w", err)
			}
		}
		return nil
	})
}

type boundTable struct{ table, pk string }

func tablesOf(bindings []Registration) ([]boundTable, error) {
	var out []boundTable
	for i, b := range bindings {
		e := entryOf(b)
		if e == nil {
			return nil, fmt.Errorf("%w: binding %d was not created with binding.New", ErrInvalidBinding, i)
		}
		j := slices.IndexFunc(out, func(t boundTable) bool { return t.table == e.table })
		if j >= 0 {
			if out[j].pk != e.pk {
				return nil, fmt.Errorf("%w: two bindings of table %s name different primary keys (%s, %s)", ErrInvalidBinding, e.table, out[j].pk, e.pk)
			}
			continue
		}
		out = append(out, boundTable{e.table, e.pk})
	}
	return out, nil
}

func entryOf(r Registration) *entry {
	if r == nil {
		return nil
	}
	defer func() { _ = recover() }() // a nil *Binding[T] in the interface
	return r.entry()
}

// migrate creates or upgrades the package's own tables.
func (db *DB) migrate(ctx context.Context, tx txn) error {
	if err := db.lock(ctx, tx); err != nil {
		return err
	}
	p := db.prefix
	var stmts []string
	if db.pg {
		stmts = []string{
			"CREATE TABLE IF NOT EXISTS " + p + "binding_schema (version integer NOT NULL)",
			"CREATE TABLE IF NOT EXISTS " + p + `binding_outbox (
				id bigserial PRIMARY KEY,
				tbl text NOT NULL,
				op text NOT NULL,
				row_key text NOT NULL,
				old_row jsonb,
				new_row jsonb,
				created_at timestamptz NOT NULL DEFAULT clock_timestamp()
			)`,
			"CREATE INDEX IF NOT EXISTS " + p + "binding_outbox_key ON " + p + "binding_outbox (tbl, row_key, id)",
			"CREATE TABLE IF NOT EXISTS " + p + "binding_tables (tbl text PRIMARY KEY, pk text NOT NULL, columns text NOT NULL, version integer NOT NULL)",
		}
	} else {
		stmts = []string{
			"CREATE TABLE IF NOT EXISTS " + p + "binding_schema (version INTEGER NOT NULL)",
			"CREATE TABLE IF NOT EXISTS " + p + `binding_outbox (
				id INTEGER PRIMARY KEY AUTOINCREMENT,
				tbl TEXT NOT NULL,
				op TEXT NOT NULL,
				row_key TEXT NOT NULL,
				old_row TEXT,
				new_row TEXT,
				created_ms INTEGER NOT NULL
			)`,
			"CREATE INDEX IF NOT EXISTS " + p + "binding_outbox_key ON " + p + "binding_outbox (tbl, row_key, id)",
			"CREATE TABLE IF NOT EXISTS " + p + "binding_tables (tbl TEXT PRIMARY KEY, pk TEXT NOT NULL, columns TEXT NOT NULL, version INTEGER NOT NULL)",
			"CREATE TABLE IF NOT EXISTS " + p + "binding_lease (name TEXT PRIMARY KEY, owner TEXT NOT NULL, until_ms INTEGER NOT NULL)",
		}
	}
	for _, s := range stmts {
		if err := tx.exec(ctx, s); err != nil {
			return fmt.Errorf("binding: create tables: %w", err)
		}
	}
	var version int
	err := tx.queryRow(ctx, "SELECT version FROM "+p+"binding_schema").Scan(&version)
	switch {
	case sqldb.IsNoRows(err):
		if err := tx.exec(ctx, db.rebind("INSERT INTO "+p+"binding_schema (version) VALUES (?)"), SchemaVersion); err != nil {
			return fmt.Errorf("binding: schema version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("binding: schema version: %w", err)
	case version > SchemaVersion:
		return fmt.Errorf("binding: the tables %sbinding_* are at schema version %d, newer than this program's %d; upgrade the program", p, version, SchemaVersion)
	}
	if db.pg {
		var schema string
		if err := tx.queryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
			return fmt.Errorf("binding: current schema: %w", err)
		}
		outbox := pgx.Identifier{schema, p + "binding_outbox"}.Sanitize()
		fn := `CREATE OR REPLACE FUNCTION ` + p + `binding_capture() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO ` + outbox + ` (tbl, op, row_key, new_row)
		VALUES (TG_TABLE_NAME, 'I', to_jsonb(NEW)->>TG_ARGV[0], to_jsonb(NEW));
	ELSIF TG_OP = 'UPDATE' THEN
		INSERT INTO ` + outbox + ` (tbl, op, row_key, old_row, new_row)
		VALUES (TG_TABLE_NAME, 'U', to_jsonb(NEW)->>TG_ARGV[0], to_jsonb(OLD), to_jsonb(NEW));
	ELSE
		INSERT INTO ` + outbox + ` (tbl, op, row_key, old_row)
		VALUES (TG_TABLE_NAME, 'D', to_jsonb(OLD)->>TG_ARGV[0], to_jsonb(OLD));
	END IF;
	PERFORM pg_notify('` + db.notifyCh + `', '');
	RETURN NULL;
END
$fn$`
		if err := tx.exec(ctx, fn); err != nil {
			return fmt.Errorf("binding: create function %sbinding_capture: %w", p, err)
		}
	}
	return nil
}

// lock serializes installs: PostgreSQL's transaction advisory lock; SQLite's
// write lock, which an immediate transaction already holds (a write takes
// it otherwise).
func (db *DB) lock(ctx context.Context, tx txn) error {
	if db.pg {
		if err := tx.exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", db.prefix+"binding"); err != nil {
			return fmt.Errorf("binding: lock: %w", err)
		}
		return nil
	}
	// A write takes the database's write lock even in a deferred
	// transaction (a handle given to NewSQLite may not begin immediate
	// ones).
	if err := tx.exec(ctx, "CREATE TABLE IF NOT EXISTS "+db.prefix+"binding_schema (version INTEGER NOT NULL)"); err != nil {
		return fmt.Errorf("binding: lock: %w", err)
	}
	if err := tx.exec(ctx, "UPDATE "+db.prefix+"binding_schema SET version = version"); err != nil {
		return fmt.Errorf("binding: lock: %w", err)
	}
	return nil
}

func (db *DB) tableExists(ctx context.Context, tx txn, name string) (bool, error) {
	var n int
	var err error
	if db.pg {
		err = tx.queryRow(ctx, "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = $1", name).Scan(&n)
	} else {
		err = tx.queryRow(ctx, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?", name).Scan(&n)
	}
	if err != nil {
		return false, fmt.Errorf("binding: look for table %s: %w", name, err)
	}
	return n > 0, nil
}

// columns lists the columns of table, in order.
func (db *DB) columns(ctx context.Context, tx txn, table string) ([]string, error) {
	var q string
	if db.pg {
		q = "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
	} else {
		q = "SELECT name FROM pragma_table_info(?) ORDER BY cid"
	}
	rows, err := tx.query(ctx, q, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

func (db *DB) installTable(ctx context.Context, tx txn, table, pk string) error {
	cols, err := db.columns(ctx, tx, table)
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		return fmt.Errorf("no table %s", table)
	}
	if !slices.Contains(cols, pk) {
		return fmt.Errorf("table %s has no column %s (the binding's PK)", table, pk)
	}
	colList := strings.Join(cols, ",")
	if db.pg {
		colList = "" // to_jsonb captures every column, present and future
	}
	var (
		gotCols    string
		gotPK      string
		gotVersion int
	)
	p := db.prefix
	err = tx.queryRow(ctx, db.rebind("SELECT pk, columns, version FROM "+p+"binding_tables WHERE tbl = ?"), table).Scan(&gotPK, &gotCols, &gotVersion)
	switch {
	case err == nil && gotPK == pk && gotCols == colList && gotVersion == triggerVersion:
		return nil // up to date
	case err != nil && !sqldb.IsNoRows(err):
		return err
	}
	for _, stmt := range db.dropTriggers(table) {
		if err := tx.exec(ctx, stmt); err != nil {
			return err
		}
	}
	for _, stmt := range db.createTriggers(table, pk, cols) {
		if err := tx.exec(ctx, stmt); err != nil {
			return err
		}
	}
	if err := tx.exec(ctx, db.rebind("DELETE FROM "+p+"binding_tables WHERE tbl = ?"), table); err != nil {
		return err
	}
	return tx.exec(ctx, db.rebind("INSERT INTO "+p+"binding_tables (tbl, pk, columns, version) VALUES (?, ?, ?, ?)"), table, pk, colList, triggerVersion)
}

func quote(id string) string { return `"` + id + `"` }

func (db *DB) triggerName(table, suffix string) string {
	return db.prefix + "binding_" + table + suffix
}

func (db *DB) dropTriggers(table string) []string {
	if db.pg {
		return []string{"DROP TRIGGER IF EXISTS " + quote(db.triggerName(table, "")) + " ON " + quote(table)}
	}
	var out []string
	for _, s := range []string{"_insert", "_update", "_delete"} {
		out = append(out, "DROP TRIGGER IF EXISTS "+quote(db.triggerName(table, s)))
	}
	return out
}

func (db *DB) createTriggers(table, pk string, cols []string) []string {
	if db.pg {
		return []string{"CREATE TRIGGER " + quote(db.triggerName(table, "")) +
			" AFTER INSERT OR UPDATE OR DELETE ON " + quote(table) +
			" FOR EACH ROW EXECUTE FUNCTION " + db.prefix + "binding_capture('" + pk + "')"}
	}
	image := func(row string) string {
		parts := make([]string, 0, len(cols))
		for _, c := range cols {
			v := row + "." + quote(c)
			// JSON cannot hold a BLOB: it is recorded as hexadecimal text.
			parts = append(parts, "'"+strings.ReplaceAll(c, "'", "''")+"', CASE typeof("+v+") WHEN 'blob' THEN hex("+v+") ELSE "+v+" END")
		}
		return "json_object(" + strings.Join(parts, ", ") + ")"
	}
	now := "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
	outbox := db.prefix + "binding_outbox"
	ins := func(op, keyRow, oldImg, newImg string) string {
		return "INSERT INTO " + outbox + " (tbl, op, row_key, old_row, new_row, created_ms) VALUES ('" + table + "', '" + op +
			"', CAST(" + keyRow + "." + quote(pk) + " AS TEXT), " + oldImg + ", " + newImg + ", " + now + ");"
	}
	return []string{
		"CREATE TRIGGER " + quote(db.triggerName(table, "_insert")) + " AFTER INSERT ON " + quote(table) +
			" FOR EACH ROW BEGIN " + ins("I", "NEW", "NULL", image("NEW")) + " END",
		"CREATE TRIGGER " + quote(db.triggerName(table, "_update")) + " AFTER UPDATE ON " + quote(table) +
			" FOR EACH ROW BEGIN " + ins("U", "NEW", image("OLD"), image("NEW")) + " END",
		"CREATE TRIGGER " + quote(db.triggerName(table, "_delete")) + " AFTER DELETE ON " + quote(table) +
			" FOR EACH ROW BEGIN " + ins("D", "OLD", image("OLD"), "NULL") + " END",
	}
}

// txn is a transaction on either database.
type txn interface {
	exec(ctx context.Context, q string, args ...any) error
	query(ctx context.Context, q string, args ...any) (rowsIter, error)
	queryRow(ctx context.Context, q string, args ...any) scanner
}

type (
	rowsIter = sqldb.Rows
	scanner  = sqldb.Scanner
)

// inTx runs fn in a transaction (immediate on SQLite) and commits it when
// fn returns nil.
func (db *DB) inTx(ctx context.Context, fn func(tx txn) error) error {
	if db.isClosed() {
		return ErrClosed
	}
	if db.pg {
		c, err := db.pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("binding: %w", err)
		}
		defer db.pool.Release(c)
		return pgInTx(ctx, c, fn)
	}
	tx, err := db.sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("binding: begin: %w", err)
	}
	if err := fn(sqlTxn{tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("binding: commit: %w", err)
	}
	return nil
}

func pgInTx(ctx context.Context, c *pgx.Conn, fn func(tx txn) error) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return fmt.Errorf("binding: begin: %w", err)
	}
	if err := fn(pgTxn{tx}); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("binding: commit: %w", err)
	}
	return nil
}

type sqlTxn struct{ tx *sql.Tx }

func (t sqlTxn) exec(ctx context.Context, q string, args ...any) error {
	_, err := t.tx.ExecContext(ctx, q, args...)
	return err
}

func (t sqlTxn) query(ctx context.Context, q string, args ...any) (rowsIter, error) {
	r, err := t.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqldb.SQLRows{Rows: r}, nil
}

func (t sqlTxn) queryRow(ctx context.Context, q string, args ...any) scanner {
	return t.tx.QueryRowContext(ctx, q, args...)
}

type pgTxn struct{ tx pgx.Tx }

func (t pgTxn) exec(ctx context.Context, q string, args ...any) error {
	_, err := t.tx.Exec(ctx, q, args...)
	return err
}

func (t pgTxn) query(ctx context.Context, q string, args ...any) (rowsIter, error) {
	return t.tx.Query(ctx, q, args...)
}

func (t pgTxn) queryRow(ctx context.Context, q string, args ...any) scanner {
	return t.tx.QueryRow(ctx, q, args...)
}
