package store

// This file owns the rows of blobs and their references. A blob row exists
// only once its file is durable (the caller commits the file first); a
// reference is a random key a user owns that points at a blob. A blob no
// reference points at is garbage: the server's collector removes the row
// and then the file, holding its per-hash lock across both so an upload or
// dedup of the same content cannot slip in between.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Reference is one reference row with its blob's size.
type Reference struct {
	Key        string
	Blob       string // the blob's SHA-256
	Size       int64
	Owner      int64
	TimeCreate time.Time
	TimeAccess time.Time
}

// BlobInfo is one blob row.
type BlobInfo struct {
	Hash       string
	Size       int64
	TimeCreate time.Time
	TimeAccess time.Time
	References int64
}

// InUseError says which task, result or task type holds a reference that
// cannot be deleted.
type InUseError struct {
	Ref  string
	Task string // task key ("" for a type)
	What string // "task", "result", "type", "trigger" or "image"
	Type string // with What "type": the type and its version; "trigger": the trigger's name; "image": the image's
}

func (e *InUseError) Error() string {
	if e.What == "type" {
		return fmt.Sprintf("reference %s is a file of task type %s: remove the type first", e.Ref, e.Type)
	}
	if e.What == "image" {
		return fmt.Sprintf("reference %s is a blob of image %s: remove the image first", e.Ref, e.Type)
	}
	if e.What == "trigger" {
		return fmt.Sprintf("reference %s is a file of the target of schedule or trigger %s: remove it first", e.Ref, e.Type)
	}
	return fmt.Sprintf("reference %s is used by the %s of task %s: delete that first", e.Ref, e.What, e.Task)
}

func (e *InUseError) Unwrap() error { return ErrInUse }

// AddReference records a blob whose file is in place (if it is not yet
// known) and a new reference to it owned by userID.
func (s *Store) AddReference(ctx context.Context, hash string, size int64, key string, userID int64, now time.Time) (Reference, error) {
	ref := Reference{Key: key, Blob: hash, Size: size, Owner: userID, TimeCreate: now.UTC(), TimeAccess: now.UTC()}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO blobs (hash, size, time_create, time_access) VALUES (?, ?, ?, ?)
			ON CONFLICT (hash) DO UPDATE SET time_access = excluded.time_access`,
			hash, size, us(now), us(now)); err != nil {
			return fmt.Errorf("unable to record blob: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO refs (key, blob, user_id, time_create, time_access) VALUES (?, ?, ?, ?, ?)`,
			key, hash, userID, us(now), us(now)); err != nil {
			return fmt.Errorf("unable to record reference: %w", err)
		}
		return nil
	})
	return ref, err
}

// ReferenceBlob makes a new reference to a known blob (Kolejka's dedup
// path); ErrNotFound if the blob is not known.
func (s *Store) ReferenceBlob(ctx context.Context, hash, key string, userID int64, now time.Time) (Reference, error) {
	ref := Reference{Key: key, Blob: hash, Owner: userID, TimeCreate: now.UTC(), TimeAccess: now.UTC()}
	err := s.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `UPDATE blobs SET time_access = ? WHERE hash = ? RETURNING size`, us(now), hash).Scan(&ref.Size)
		if err != nil {
			return rowErr(err, "find blob")
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO refs (key, blob, user_id, time_create, time_access) VALUES (?, ?, ?, ?, ?)`,
			key, hash, userID, us(now), us(now)); err != nil {
			return fmt.Errorf("unable to record reference: %w", err)
		}
		return nil
	})
	return ref, err
}

// Reference reads one reference.
func (s *Store) Reference(ctx context.Context, key string) (Reference, error) {
	var r Reference
	var tc, ta int64
	err := s.r.QueryRowContext(ctx, `
		SELECT r.key, r.blob, b.size, r.user_id, r.time_create, r.time_access
		FROM refs r JOIN blobs b ON b.hash = r.blob WHERE r.key = ?`, key).
		Scan(&r.Key, &r.Blob, &r.Size, &r.Owner, &tc, &ta)
	if err != nil {
		return Reference{}, rowErr(err, "read reference")
	}
	r.TimeCreate, r.TimeAccess = fromUS(tc), fromUS(ta)
	return r, nil
}

// TouchReference records an access to a reference and its blob.
func (s *Store) TouchReference(ctx context.Context, key string, now time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var hash string
		err := tx.QueryRowContext(ctx, `UPDATE refs SET time_access = ? WHERE key = ? RETURNING blob`, us(now), key).Scan(&hash)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unable to touch reference: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE blobs SET time_access = ? WHERE hash = ?`, us(now), hash); err != nil {
			return fmt.Errorf("unable to touch blob: %w", err)
		}
		return nil
	})
}

// ReferenceUsedByAssignee reports whether ref is a file of a task now
// assigned to userID (a node may read its tasks' inputs).
func (s *Store) ReferenceUsedByAssignee(ctx context.Context, ref string, userID int64) (bool, error) {
	var one int
	err := s.r.QueryRowContext(ctx, `
		SELECT 1 FROM task_files f JOIN tasks t ON t.id = f.task_id
		WHERE f.ref = ? AND t.assignee_id = ? AND t.state = ? LIMIT 1`, ref, userID, stateAssigned).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("unable to check reference use: %w", err)
	}
	return true, nil
}

// inUse returns an *InUseError if a task, a result or a task type uses ref.
func inUse(ctx context.Context, tx *sql.Tx, ref string) error {
	var key string
	err := tx.QueryRowContext(ctx, `SELECT t.key FROM task_files f JOIN tasks t ON t.id = f.task_id WHERE f.ref = ? LIMIT 1`, ref).Scan(&key)
	if err == nil {
		return &InUseError{Ref: ref, Task: key, What: "task"}
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("unable to check reference use: %w", err)
	}
	err = tx.QueryRowContext(ctx, `SELECT t.key FROM result_files f JOIN tasks t ON t.id = f.task_id WHERE f.ref = ? LIMIT 1`, ref).Scan(&key)
	if err == nil {
		return &InUseError{Ref: ref, Task: key, What: "result"}
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("unable to check reference use: %w", err)
	}
	typ, err := typeUsing(ctx, tx, ref)
	if err != nil {
		return err
	}
	if typ != "" {
		return &InUseError{Ref: ref, What: "type", Type: typ}
	}
	var trigger string
	err = tx.QueryRowContext(ctx, `SELECT g.name FROM trigger_files f JOIN triggers g ON g.id = f.trigger_id WHERE f.ref = ? LIMIT 1`, ref).Scan(&trigger)
	if err == nil {
		return &InUseError{Ref: ref, What: "trigger", Type: trigger}
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("unable to check reference use: %w", err)
	}
	var img string
	err = tx.QueryRowContext(ctx, `SELECT i.name FROM image_files f JOIN images i ON i.id = f.image_id WHERE f.ref = ? LIMIT 1`, ref).Scan(&img)
	if err == nil {
		return &InUseError{Ref: ref, What: "image", Type: img}
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("unable to check reference use: %w", err)
	}
	return nil
}

// DeleteReference removes a reference no task or result uses (else an
// *InUseError) and returns its blob's hash, for the garbage collector.
func (s *Store) DeleteReference(ctx context.Context, key string) (string, error) {
	var hash string
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := rowErr(tx.QueryRowContext(ctx, `SELECT blob FROM refs WHERE key = ?`, key).Scan(&hash), "read reference"); err != nil {
			return err
		}
		if err := inUse(ctx, tx, key); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM refs WHERE key = ?`, key); err != nil {
			return fmt.Errorf("unable to delete reference: %w", err)
		}
		return nil
	})
	return hash, err
}

// Blob reads one blob row with its reference count.
func (s *Store) Blob(ctx context.Context, hash string) (BlobInfo, error) {
	var b BlobInfo
	var tc, ta int64
	err := s.r.QueryRowContext(ctx, `
		SELECT hash, size, time_create, time_access, (SELECT COUNT(*) FROM refs WHERE blob = blobs.hash)
		FROM blobs WHERE hash = ?`, hash).Scan(&b.Hash, &b.Size, &tc, &ta, &b.References)
	if err != nil {
		return BlobInfo{}, rowErr(err, "read blob")
	}
	b.TimeCreate, b.TimeAccess = fromUS(tc), fromUS(ta)
	return b, nil
}

// DeleteBlob removes every reference to the blob and its row, unless a
// task or result uses one of them (*InUseError). The caller removes the
// file, under the blob's lock.
func (s *Store) DeleteBlob(ctx context.Context, hash string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var one int
		if err := rowErr(tx.QueryRowContext(ctx, `SELECT 1 FROM blobs WHERE hash = ?`, hash).Scan(&one), "read blob"); err != nil {
			return err
		}
		keys, err := queryColumn[string](ctx, tx, "list references", `SELECT key FROM refs WHERE blob = ?`, hash)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := inUse(ctx, tx, k); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM refs WHERE blob = ?`, hash); err != nil {
			return fmt.Errorf("unable to delete references: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM blobs WHERE hash = ?`, hash); err != nil {
			return fmt.Errorf("unable to delete blob: %w", err)
		}
		return nil
	})
}

// UnreferencedBlobs lists up to limit blobs no reference points at.
func (s *Store) UnreferencedBlobs(ctx context.Context, limit int) ([]string, error) {
	return queryColumn[string](ctx, s.r, "list garbage", `
		SELECT hash FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM refs r WHERE r.blob = b.hash) LIMIT ?`, limit)
}

// DeleteBlobIfUnreferenced removes the blob's row if no reference points at
// it, and reports whether it did (the caller then removes the file).
func (s *Store) DeleteBlobIfUnreferenced(ctx context.Context, hash string) (bool, error) {
	var deleted bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
			DELETE FROM blobs WHERE hash = ? AND NOT EXISTS (SELECT 1 FROM refs WHERE blob = ?)`, hash, hash)
		if err != nil {
			return fmt.Errorf("unable to collect blob: %w", err)
		}
		n, _ := res.RowsAffected()
		deleted = n > 0
		return nil
	})
	return deleted, err
}

// BlobKnown reports whether the blob has a row.
func (s *Store) BlobKnown(ctx context.Context, hash string) (bool, error) {
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 FROM blobs WHERE hash = ?`, hash).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("unable to read blob: %w", err)
	}
	return true, nil
}

// BlobTotals is the number of blobs and their bytes.
func (s *Store) BlobTotals(ctx context.Context) (count, bytes int64, err error) {
	err = s.r.QueryRowContext(ctx, `SELECT count, bytes FROM blob_totals WHERE id = 0`).Scan(&count, &bytes)
	if err != nil {
		return 0, 0, fmt.Errorf("unable to sum blobs: %w", err)
	}
	return count, bytes, nil
}

// SweepUploads removes up to limit references made before `before` by
// users who are not clients (nodes) that no task or result holds, and
// returns the hashes of their blobs, for the garbage collector.
//
// Why these are garbage: a node uploads files only for a result, and an
// accepted result passes its files to the task's owner. A node's reference
// that no result took after the grace period is what a failed post left:
// a result over the server's cap, a refused result, a node killed between
// its uploads and its post. A client's references are its own to keep
// (Kolejka's `blob put` hands them out for later use), so a user with the
// clients role is never swept, whatever other roles it has.
func (s *Store) SweepUploads(ctx context.Context, before time.Time, limit int) ([]string, error) {
	var hashes []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		hashes = nil
		type upload struct{ key, hash string }
		stale, err := queryRows(ctx, tx, "list stale uploads", func(rows *sql.Rows) (u upload, err error) {
			err = rows.Scan(&u.key, &u.hash)
			return u, err
		}, `
			SELECT r.key, r.blob FROM refs r JOIN users u ON u.id = r.user_id
			WHERE r.time_create < ? AND (u.roles & ?) = 0
				AND NOT EXISTS (SELECT 1 FROM task_files f WHERE f.ref = r.key)
				AND NOT EXISTS (SELECT 1 FROM result_files f WHERE f.ref = r.key)
				AND NOT EXISTS (SELECT 1 FROM type_files f WHERE f.ref = r.key)
				AND NOT EXISTS (SELECT 1 FROM trigger_files f WHERE f.ref = r.key)
				AND NOT EXISTS (SELECT 1 FROM image_files f WHERE f.ref = r.key)
			ORDER BY r.time_create LIMIT ?`, us(before), int(RoleClient), limit)
		if err != nil {
			return err
		}
		// One transaction: nothing can take a reference between the check
		// and the delete.
		for _, u := range stale {
			if _, err := tx.ExecContext(ctx, `DELETE FROM refs WHERE key = ?`, u.key); err != nil {
				return fmt.Errorf("unable to remove stale upload %s: %w", u.key, err)
			}
			hashes = append(hashes, u.hash)
		}
		return nil
	})
	return hashes, err
}
