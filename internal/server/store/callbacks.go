package store

// This file owns the callback outbox. A row is added in the same
// transaction that stores a result, so a result is never stored without its
// pending callback, and a restart finds every callback not yet delivered.
// The server's delivery loop takes due rows, POSTs them, and records the
// outcome: delivered rows are deleted; failed attempts are retried later;
// after the last attempt a row stays, marked failed, for the operator.

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Callback states.
const (
	callbackPending = 0
	callbackFailed  = 1
)

// Callback is one pending delivery.
type Callback struct {
	ID       int64
	TaskKey  string
	URL      string
	Body     []byte
	Attempts int
}

func queueCallback(ctx context.Context, tx *sql.Tx, key, url string, task, result []byte, now time.Time) error {
	body, err := callbackBody(task, result)
	if err != nil {
		return fmt.Errorf("unable to encode callback: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO callbacks (task_key, url, body, next_attempt, time_create) VALUES (?, ?, ?, ?, ?)`,
		key, url, body, us(now), us(now)); err != nil {
		return fmt.Errorf("unable to queue callback: %w", err)
	}
	return nil
}

// DueCallbacks lists up to limit pending callbacks due at now.
func (s *Store) DueCallbacks(ctx context.Context, now time.Time, limit int) ([]Callback, error) {
	rows, err := s.r.QueryContext(ctx, `
		SELECT id, task_key, url, body, attempts FROM callbacks WHERE state = ? AND next_attempt <= ? ORDER BY next_attempt LIMIT ?`,
		callbackPending, us(now), limit)
	if err != nil {
		return nil, fmt.Errorf("unable to read callbacks: %w", err)
	}
	defer rows.Close()
	var out []Callback
	for rows.Next() {
		var c Callback
		if err := rows.Scan(&c.ID, &c.TaskKey, &c.URL, &c.Body, &c.Attempts); err != nil {
			return nil, fmt.Errorf("unable to read callbacks: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// NextCallback is when the next pending callback is due, if any.
func (s *Store) NextCallback(ctx context.Context) (time.Time, bool, error) {
	var v sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT MIN(next_attempt) FROM callbacks WHERE state = ?`, callbackPending).Scan(&v); err != nil {
		return time.Time{}, false, fmt.Errorf("unable to read callbacks: %w", err)
	}
	return fromNullUS(v), v.Valid, nil
}

// CallbackDelivered removes a delivered callback.
func (s *Store) CallbackDelivered(ctx context.Context, id int64) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM callbacks WHERE id = ?`, id); err != nil {
			return fmt.Errorf("unable to record callback delivery: %w", err)
		}
		return nil
	})
}

// CallbackFailed records a failed attempt: retried at next, or, if final,
// kept as failed.
func (s *Store) CallbackFailed(ctx context.Context, id int64, why string, next time.Time, final bool) error {
	state := callbackPending
	if final {
		state = callbackFailed
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
			UPDATE callbacks SET attempts = attempts + 1, last_error = ?, next_attempt = ?, state = ? WHERE id = ?`,
			why, us(next), state, id); err != nil {
			return fmt.Errorf("unable to record callback failure: %w", err)
		}
		return nil
	})
}

// CallbackCounts is the number of pending and failed callbacks.
func (s *Store) CallbackCounts(ctx context.Context) (pending, failed int64, err error) {
	err = s.r.QueryRowContext(ctx, `
		SELECT COALESCE(SUM(state = ?), 0), COALESCE(SUM(state = ?), 0) FROM callbacks`, callbackPending, callbackFailed).
		Scan(&pending, &failed)
	if err != nil {
		return 0, 0, fmt.Errorf("unable to count callbacks: %w", err)
	}
	return pending, failed, nil
}
