package store

// This file owns the shapes every query of the store takes: a list read
// into a slice, a one-row read whose missing row is ErrNotFound, and a
// write of one statement. The SQL stays with its callers, plain enough for
// SQLite and PostgreSQL alike.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// querier is what the read pool and a write transaction both answer.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryRows runs query and returns its rows, each as scan makes it; what
// names the read in errors ("unable to <what>: …"). The rows are closed on
// return, so a transaction can run its next statement at once.
func queryRows[T any](ctx context.Context, q querier, what string, scan func(*sql.Rows) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("unable to %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("unable to %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("unable to %s: %w", what, err)
	}
	return out, nil
}

// queryColumn is queryRows for a query of one column.
func queryColumn[T any](ctx context.Context, q querier, what, query string, args ...any) ([]T, error) {
	return queryRows(ctx, q, what, scanValue[T], query, args...)
}

func scanValue[T any](rows *sql.Rows) (T, error) {
	var v T
	err := rows.Scan(&v)
	return v, err
}

// notFound is a one-row read's error with sql.ErrNoRows as ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// rowErr is the error of a one-row read of something a caller names: the
// bare ErrNotFound when there is no such row, "unable to <what>: …" for any
// other failure.
func rowErr(err error, what string) error {
	if err == nil || errors.Is(err, sql.ErrNoRows) {
		return notFound(err)
	}
	return fmt.Errorf("unable to %s: %w", what, err)
}

// writeOne runs one statement in a write transaction of its own and
// returns how many rows it changed; what names it in errors.
func (s *Store) writeOne(ctx context.Context, what, query string, args ...any) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("unable to %s: %w", what, err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}
