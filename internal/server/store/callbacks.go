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
	return queryRows(ctx, s.r, "read callbacks", func(rows *sql.Rows) (c Callback, err error) {
		err = rows.Scan(&c.ID, &c.TaskKey, &c.URL, &c.Body, &c.Attempts)
		return c, err
	}, `SELECT id, task_key, url, body, attempts FROM callbacks WHERE state = ? AND next_attempt <= ? ORDER BY next_attempt LIMIT ?`,
		callbackPending, us(now), limit)
}

// NextCallback is when the next pending callback is due, if any.
func (s *Store) NextCallback(ctx context.Context) (time.Time, bool, error) {
	var v sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT MIN(next_attempt) FROM callbacks WHERE state = ?`, callbackPending).Scan(&v); err != nil {
		return time.Time{}, false, fmt.Errorf("unable to read callbacks: %w", err)
	}
	return fromNullUS(v), v.Valid, nil
}

// ClaimCallback takes due callback c for one delivery attempt until
// until: it reports false when another server (a replica) took it first.
// A claimant that dies lets it fall due again at until.
func (s *Store) ClaimCallback(ctx context.Context, c Callback, now, until time.Time) (bool, error) {
	n, err := s.writeOne(ctx, "claim callback", `
		UPDATE callbacks SET next_attempt = ? WHERE id = ? AND state = ? AND attempts = ? AND next_attempt <= ?`,
		us(until), c.ID, callbackPending, c.Attempts, us(now))
	return n == 1, err
}

// ReleaseCallback gives back the claim on c that ClaimCallback took until
// until, due again at now: an attempt a shutdown cut off is retried at the
// next start (or by a replica) at once, not when the claim would lapse.
// A claim no longer held as taken (recorded since) is left alone.
func (s *Store) ReleaseCallback(ctx context.Context, c Callback, until, now time.Time) error {
	_, err := s.writeOne(ctx, "release callback", `
		UPDATE callbacks SET next_attempt = ? WHERE id = ? AND state = ? AND attempts = ? AND next_attempt = ?`,
		us(now), c.ID, callbackPending, c.Attempts, us(until))
	return err
}

// CallbackDelivered removes a delivered callback.
func (s *Store) CallbackDelivered(ctx context.Context, id int64) error {
	_, err := s.writeOne(ctx, "record callback delivery", `DELETE FROM callbacks WHERE id = ?`, id)
	return err
}

// CallbackFailed records a failed attempt: retried at next, or, if final,
// kept as failed.
func (s *Store) CallbackFailed(ctx context.Context, id int64, why string, next time.Time, final bool) error {
	state := callbackPending
	if final {
		state = callbackFailed
	}
	_, err := s.writeOne(ctx, "record callback failure", `
		UPDATE callbacks SET attempts = attempts + 1, last_error = ?, next_attempt = ?, state = ? WHERE id = ?`,
		why, us(next), state, id)
	return err
}

// CallbackCounts is the number of pending and failed callbacks.
func (s *Store) CallbackCounts(ctx context.Context) (pending, failed int64, err error) {
	err = s.r.QueryRowContext(ctx, `
		SELECT COUNT(CASE WHEN state = ? THEN 1 END), COUNT(CASE WHEN state = ? THEN 1 END) FROM callbacks`, callbackPending, callbackFailed).
		Scan(&pending, &failed)
	if err != nil {
		return 0, 0, fmt.Errorf("unable to count callbacks: %w", err)
	}
	return pending, failed, nil
}
