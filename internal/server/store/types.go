package store

// This file owns task types: their versions, their files' references and
// who may see them. A type's name belongs to the user who first put it
// (names are global, so `--type NAME` is never ambiguous); each put of the
// name by its owner is a new version, 1, 2, …; removing the type removes
// every version. A type's files hold their references as a task's do, so
// a reference a type uses cannot be deleted (InUseError) and its blob is
// never collected; a task made from the type may use them, though they are
// the type owner's.
//
// What a type means (its params, its placeholders) is package tasktype's:
// the store keeps the description as the server gives it.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// NewType is a version of a type to record.
type NewType struct {
	Owner int64
	// ReadAll: the owner may use any user's references (inspectors,
	// managers), as in a task.
	ReadAll bool
	Name    string
	// Public makes the type (every version of it) usable by every user;
	// false makes it its owner's (and managers') again.
	Public      bool
	Description []byte            // the type's kolejka_task.json, files as references
	Files       map[string]string // the type's file name (as in its description) → reference key
	Now         time.Time
}

// TypeRow is one version of a type.
type TypeRow struct {
	ID          int64
	Name        string
	Version     int
	Owner       int64
	OwnerName   string
	Public      bool
	Description []byte
	TimeCreate  time.Time
	Files       map[string]string // filled by Type only
}

// TypeOwnedError is a put of a type name another user owns.
type TypeOwnedError struct {
	Name  string
	Owner string // the owner's user name
}

func (e *TypeOwnedError) Error() string {
	return fmt.Sprintf("name: the type name %q belongs to user %s (the first to put it); choose another name", e.Name, e.Owner)
}

// PutType records t as the next version of its name and returns the
// version: 1 for a new name. A *TypeOwnedError when another user owns the
// name, a FileErrors when a file's reference is unknown or not the owner's
// to use; nothing is recorded then.
func (s *Store) PutType(ctx context.Context, t NewType) (int, error) {
	var version int
	err := s.write(ctx, func(tx *sql.Tx) error {
		var owner sql.NullInt64
		var ownerName sql.NullString
		var last sql.NullInt64
		// One row for the name: any version names the owner (all are
		// theirs), MAX the last version.
		err := tx.QueryRowContext(ctx, `
			SELECT MIN(t.user_id), MIN(u.name), MAX(t.version)
			FROM types t JOIN users u ON u.id = t.user_id WHERE t.name = ?`, t.Name).Scan(&owner, &ownerName, &last)
		if err != nil {
			return fmt.Errorf("unable to read type %s: %w", t.Name, err)
		}
		if owner.Valid && owner.Int64 != t.Owner {
			return &TypeOwnedError{Name: t.Name, Owner: ownerName.String}
		}
		if err := checkRefs(ctx, tx, t.Files, t.Owner, t.ReadAll, nil); err != nil {
			return err
		}
		version = int(last.Int64) + 1
		var id int64
		err = tx.QueryRowContext(ctx, `
			INSERT INTO types (user_id, name, version, public, description, time_create)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
			t.Owner, t.Name, version, boolInt(t.Public), t.Description, us(t.Now)).Scan(&id)
		if err != nil {
			return fmt.Errorf("unable to record type %s: %w", t.Name, err)
		}
		for name, ref := range t.Files {
			if _, err := tx.ExecContext(ctx, `INSERT INTO type_files (type_id, name, ref) VALUES (?, ?, ?)`, id, name, ref); err != nil {
				return fmt.Errorf("unable to record type file: %w", err)
			}
		}
		// Sharing is the name's: the last put says it for every version.
		if _, err := tx.ExecContext(ctx, `UPDATE types SET public = ? WHERE name = ?`, boolInt(t.Public), t.Name); err != nil {
			return fmt.Errorf("unable to share type %s: %w", t.Name, err)
		}
		return nil
	})
	return version, err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

const typeColumns = `t.id, t.name, t.version, t.user_id, u.name, t.public, t.description, t.time_create`

func scanType(row scanner) (TypeRow, error) {
	var r TypeRow
	var public int
	var tc int64
	if err := row.Scan(&r.ID, &r.Name, &r.Version, &r.Owner, &r.OwnerName, &public, &r.Description, &tc); err != nil {
		return TypeRow{}, err
	}
	r.Public, r.TimeCreate = public != 0, fromUS(tc)
	return r, nil
}

// Types lists the latest version of every type userID may use (its own
// and the public ones; every type with all), by name.
func (s *Store) Types(ctx context.Context, userID int64, all bool) ([]TypeRow, error) {
	return queryRows(ctx, s.r, "list types", func(rows *sql.Rows) (TypeRow, error) { return scanType(rows) }, `
		SELECT `+typeColumns+` FROM types t JOIN users u ON u.id = t.user_id
		WHERE t.version = (SELECT MAX(x.version) FROM types x WHERE x.name = t.name)
			AND (t.user_id = ? OR t.public = 1 OR ? = 1)
		ORDER BY t.name`, userID, boolInt(all))
}

// Type reads version of the type name (0: the latest) with its files;
// ErrNotFound if there is none. Who may use it is the caller's check.
func (s *Store) Type(ctx context.Context, name string, version int) (TypeRow, error) {
	q := `SELECT ` + typeColumns + ` FROM types t JOIN users u ON u.id = t.user_id WHERE t.name = ?`
	args := []any{name}
	if version > 0 {
		q += ` AND t.version = ?`
		args = append(args, version)
	} else {
		q += ` ORDER BY t.version DESC LIMIT 1`
	}
	r, err := scanType(s.r.QueryRowContext(ctx, q, args...))
	if err != nil {
		return TypeRow{}, rowErr(err, "read type")
	}
	type file struct{ name, ref string }
	files, err := queryRows(ctx, s.r, "read type files", func(rows *sql.Rows) (f file, err error) {
		err = rows.Scan(&f.name, &f.ref)
		return f, err
	}, `SELECT name, ref FROM type_files WHERE type_id = ?`, r.ID)
	if err != nil {
		return TypeRow{}, err
	}
	r.Files = make(map[string]string, len(files))
	for _, f := range files {
		r.Files[f.name] = f.ref
	}
	return r, nil
}

// RemoveType removes every version of the type name and its files'
// links (the references stay their owner's, and tasks made from the type
// keep theirs); ErrNotFound if there is no such type.
func (s *Store) RemoveType(ctx context.Context, name string) error {
	n, err := s.writeOne(ctx, "remove type", `DELETE FROM types WHERE name = ?`, name)
	if err == nil && n == 0 {
		return ErrNotFound
	}
	return err
}

// typeRefs are the references of the files of version of the type name,
// when userID may use that type (its owner's, or public): a task rendered
// from the type uses them as its own.
func typeRefs(ctx context.Context, tx *sql.Tx, name string, version int, userID int64) (map[string]bool, error) {
	if name == "" || version <= 0 {
		return nil, nil
	}
	refs, err := queryColumn[string](ctx, tx, "read type files", `
		SELECT f.ref FROM type_files f JOIN types t ON t.id = f.type_id
		WHERE t.name = ? AND t.version = ? AND (t.user_id = ? OR t.public = 1)`, name, version, userID)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(refs))
	for _, r := range refs {
		out[r] = true
	}
	return out, nil
}

// typeUsing names a type version whose files use ref, "" if none.
func typeUsing(ctx context.Context, tx *sql.Tx, ref string) (string, error) {
	var name string
	var version int
	err := tx.QueryRowContext(ctx, `
		SELECT t.name, t.version FROM type_files f JOIN types t ON t.id = f.type_id WHERE f.ref = ? LIMIT 1`, ref).Scan(&name, &version)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("unable to check reference use: %w", err)
	}
	return fmt.Sprintf("%s (version %d)", name, version), nil
}

// ReferenceOfPublicType reports whether ref is a file of a public type:
// any user may read it (`type get` of a shared type).
func (s *Store) ReferenceOfPublicType(ctx context.Context, ref string) (bool, error) {
	var one int
	err := s.r.QueryRowContext(ctx, `
		SELECT 1 FROM type_files f JOIN types t ON t.id = f.type_id WHERE f.ref = ? AND t.public = 1 LIMIT 1`, ref).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("unable to check reference use: %w", err)
	}
	return true, nil
}
