package store

// This file owns moving an installation from SQLite to PostgreSQL
// (`kolejka-server migrate --to`): every row of the SQLite file is copied
// into an empty PostgreSQL database in one transaction, then the two are
// compared table by table. The SQLite file is only read (a read-only
// connection, one read transaction, so one consistent snapshot); the
// caller holds the data folder's lock, so no server writes meanwhile.
//
// The counters the schema's triggers keep (task_counts, blob_totals,
// queue_counts) are not copied: the target's triggers build them from
// the copied rows, and the comparison then checks them against the
// source's, which proves the triggers of both dialects agree.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// derived are the tables the schema's triggers keep.
var derived = map[string]bool{"task_counts": true, "blob_totals": true, "queue_counts": true}

// ErrNotEmpty is a target database that already holds an installation.
var ErrNotEmpty = errors.New("the target database is not empty")

// CopyReport is what CopySQLite copied: rows per table (the derived
// counters included, as compared).
type CopyReport struct {
	Rows map[string]int64
}

// CopySQLite copies the SQLite database file src into s, which must be a
// PostgreSQL store holding no data, and verifies the copy. src must be at
// this program's schema version (a server of this version migrates it).
// On any error s is left as it was: the copy is one transaction.
func (s *Store) CopySQLite(ctx context.Context, src string) (CopyReport, error) {
	if !s.postgres {
		return CopyReport{}, errors.New("unable to copy: the target must be a PostgreSQL database")
	}
	in, err := openReadOnly(src)
	if err != nil {
		return CopyReport{}, err
	}
	defer func() { _ = in.Close() }() // read-only
	in.SetMaxOpenConns(1)
	rtx, err := in.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return CopyReport{}, fmt.Errorf("unable to read %s: %w", src, err)
	}
	defer rtx.Rollback()
	var version int
	if err := rtx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&version); err != nil {
		return CopyReport{}, fmt.Errorf("unable to read %s: not a kolejka database: %w", src, err)
	}
	if version != SchemaVersion() {
		return CopyReport{}, fmt.Errorf("unable to copy %s: its schema is step %d, this program's %d (start this version's server on it once first)", src, version, SchemaVersion())
	}
	tables, err := sqliteTables(ctx, rtx)
	if err != nil {
		return CopyReport{}, fmt.Errorf("unable to read %s: %w", src, err)
	}
	rep := CopyReport{Rows: map[string]int64{}}
	err = s.write(ctx, func(tx *sql.Tx) error {
		for _, t := range []string{"users", "tasks", "blobs"} {
			var n int64
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t).Scan(&n); err != nil {
				return fmt.Errorf("unable to read the target: %w", err)
			}
			if n > 0 {
				return fmt.Errorf("unable to copy: %w (%d rows in %s)", ErrNotEmpty, n, t)
			}
		}
		// What the migrations put in (a default queue) comes with the
		// source's rows instead.
		for _, t := range slices.Backward(tables) {
			if derived[t.name] {
				continue
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+t.name); err != nil {
				return fmt.Errorf("unable to empty the target's table %s: %w", t.name, err)
			}
		}
		for _, t := range tables {
			if derived[t.name] {
				continue
			}
			n, err := copyTable(ctx, rtx, tx, t)
			if err != nil {
				return err
			}
			rep.Rows[t.name] = n
		}
		if err := resetIdentities(ctx, tx); err != nil {
			return err
		}
		// The comparison, inside the transaction: a difference rolls the
		// whole copy back.
		for _, t := range tables {
			if err := sameRows(ctx, rtx, tx, t, rep.Rows); err != nil {
				return err
			}
		}
		return nil
	})
	return rep, err
}

// table is a table of the source with its columns, in order.
type table struct {
	name string
	cols []string
}

// sqliteTables lists the source's tables (but the schema's version) in
// an order where each comes after those its foreign keys refer to.
func sqliteTables(ctx context.Context, tx *sql.Tx) ([]table, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_version' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	deps := map[string][]string{}
	cols := map[string][]string{}
	for _, n := range names {
		fk, err := tx.QueryContext(ctx, `SELECT "table" FROM pragma_foreign_key_list(?)`, n)
		if err != nil {
			return nil, err
		}
		for fk.Next() {
			var ref string
			if err := fk.Scan(&ref); err != nil {
				fk.Close()
				return nil, err
			}
			if ref != n {
				deps[n] = append(deps[n], ref)
			}
		}
		fk.Close()
		ci, err := tx.QueryContext(ctx, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, n)
		if err != nil {
			return nil, err
		}
		for ci.Next() {
			var c string
			if err := ci.Scan(&c); err != nil {
				ci.Close()
				return nil, err
			}
			cols[n] = append(cols[n], c)
		}
		ci.Close()
	}
	var out []table
	done := map[string]bool{}
	var visit func(n string, path []string) error
	visit = func(n string, path []string) error {
		if done[n] {
			return nil
		}
		if slices.Contains(path, n) {
			return fmt.Errorf("foreign keys in a cycle: %s", strings.Join(append(path, n), " → "))
		}
		for _, d := range deps[n] {
			if err := visit(d, append(path, n)); err != nil {
				return err
			}
		}
		done[n] = true
		out = append(out, table{name: n, cols: cols[n]})
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// copyTable copies every row of t, in rowid order where there is one.
func copyTable(ctx context.Context, from, to *sql.Tx, t table) (int64, error) {
	text, err := textColumns(ctx, to, t.name)
	if err != nil {
		return 0, err
	}
	quoted := make([]string, len(t.cols))
	for i, c := range t.cols {
		quoted[i] = `"` + c + `"`
	}
	list := strings.Join(quoted, ", ")
	rows, err := from.QueryContext(ctx, `SELECT `+list+` FROM "`+t.name+`"`)
	if err != nil {
		return 0, fmt.Errorf("unable to read table %s: %w", t.name, err)
	}
	defer rows.Close()
	insert := `INSERT INTO ` + t.name + ` (` + list + `) VALUES (` + strings.TrimSuffix(strings.Repeat("?, ", len(t.cols)), ", ") + `)`
	stmt, err := to.PrepareContext(ctx, insert)
	if err != nil {
		return 0, fmt.Errorf("unable to copy table %s: %w", t.name, err)
	}
	defer func() { _ = stmt.Close() }()
	vals := make([]any, len(t.cols))
	ptrs := make([]any, len(t.cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, fmt.Errorf("unable to read table %s: %w", t.name, err)
		}
		for i, v := range vals {
			// SQLite hands back what a row holds; PostgreSQL's text
			// columns take text.
			if b, ok := v.([]byte); ok && text[t.cols[i]] {
				vals[i] = string(b)
			}
		}
		if _, err := stmt.ExecContext(ctx, vals...); err != nil {
			return n, fmt.Errorf("unable to copy a row of table %s: %w", t.name, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("unable to read table %s: %w", t.name, err)
	}
	return n, nil
}

// textColumns are the text columns of PostgreSQL table t.
func textColumns(ctx context.Context, tx *sql.Tx, t string) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = ? AND data_type = 'text'`, t)
	if err != nil {
		return nil, fmt.Errorf("unable to read the target's table %s: %w", t, err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out[c] = true
	}
	return out, rows.Err()
}

// resetIdentities moves every identity column's sequence past the copied
// ids, so that the next row gets a new one.
func resetIdentities(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND is_identity = 'YES'`)
	if err != nil {
		return fmt.Errorf("unable to read the target's identity columns: %w", err)
	}
	type col struct{ t, c string }
	var cols []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.t, &c.c); err != nil {
			rows.Close()
			return err
		}
		cols = append(cols, c)
	}
	rows.Close()
	for _, c := range cols {
		if _, err := tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence(?, ?), COALESCE((SELECT MAX(`+c.c+`) FROM `+c.t+`), 0) + 1, false)`, c.t, c.c); err != nil {
			return fmt.Errorf("unable to move the identity of %s.%s: %w", c.t, c.c, err)
		}
	}
	return nil
}

// sameRows compares table t in both databases: the row count, and for a
// derived counter table every row.
func sameRows(ctx context.Context, from, to *sql.Tx, t table, rows map[string]int64) error {
	count := func(tx *sql.Tx) (int64, error) {
		var n int64
		err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t.name).Scan(&n)
		return n, err
	}
	a, err := count(from)
	if err != nil {
		return fmt.Errorf("unable to count table %s in the source: %w", t.name, err)
	}
	b, err := count(to)
	if err != nil {
		return fmt.Errorf("unable to count table %s in the target: %w", t.name, err)
	}
	if !derived[t.name] {
		if a != b {
			return fmt.Errorf("unable to copy: table %s has %d rows in the source, %d in the target", t.name, a, b)
		}
		return nil
	}
	dump := func(tx *sql.Tx) (map[string]bool, error) {
		q := `SELECT ` + strings.Join(t.cols, ", ") + ` FROM ` + t.name
		rs, err := tx.QueryContext(ctx, q)
		if err != nil {
			return nil, err
		}
		defer rs.Close()
		out := map[string]bool{}
		vals := make([]any, len(t.cols))
		ptrs := make([]any, len(t.cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rs.Next() {
			if err := rs.Scan(ptrs...); err != nil {
				return nil, err
			}
			// Rows with a zero count are the same as none.
			if vals[len(vals)-1] == int64(0) && t.name != "blob_totals" {
				continue
			}
			out[fmt.Sprint(vals...)] = true
		}
		return out, rs.Err()
	}
	x, err := dump(from)
	if err != nil {
		return fmt.Errorf("unable to read table %s in the source: %w", t.name, err)
	}
	y, err := dump(to)
	if err != nil {
		return fmt.Errorf("unable to read table %s in the target: %w", t.name, err)
	}
	if !maps.Equal(x, y) {
		return fmt.Errorf("unable to copy: the counters in %s differ: source %v, target %v", t.name, slices.Sorted(maps.Keys(x)), slices.Sorted(maps.Keys(y)))
	}
	rows[t.name] = b
	return nil
}

// SQLiteBlobs calls fn with every blob row (hash and size) of the SQLite
// database file src, read-only.
func SQLiteBlobs(ctx context.Context, src string, fn func(hash string, size int64) error) error {
	in, err := openReadOnly(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }() // read-only
	rows, err := in.QueryContext(ctx, `SELECT hash, size FROM blobs`)
	if err != nil {
		return fmt.Errorf("unable to read the blobs of %s: %w", src, err)
	}
	defer rows.Close()
	for rows.Next() {
		var h string
		var n int64
		if err := rows.Scan(&h, &n); err != nil {
			return fmt.Errorf("unable to read the blobs of %s: %w", src, err)
		}
		if err := fn(h, n); err != nil {
			return err
		}
	}
	return rows.Err()
}

// openReadOnly opens the SQLite file src to read it without changing its
// folder. A database whose write-ahead log is empty or gone (a server
// that stopped cleanly) is opened immutable, which makes no -shm or -wal
// file; one whose log holds commits (a server that was killed) must be
// read with the log, which makes SQLite create its -shm file beside it.
// Either way the caller holds the data folder's lock: nobody writes.
func openReadOnly(src string) (*sql.DB, error) {
	if _, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("unable to open %s: %w", src, err)
	}
	mode := "mode=ro&immutable=1"
	if fi, err := os.Stat(src + "-wal"); err == nil && fi.Size() > 0 {
		mode = "mode=ro"
	}
	db, err := sql.Open("sqlite3", "file:"+uriPath(src)+"?"+mode+"&_query_only=1&_busy_timeout=10000")
	if err != nil {
		return nil, fmt.Errorf("unable to open %s: %w", src, err)
	}
	return db, nil
}
