package store

// This file owns results: one per task, ever.
//
// A result is accepted from a node that holds the task now, or from one
// that held it before and lost its lease (a late result), as long as the
// task has no result yet: then it is the task's result, whoever holds the
// task now (that node's own result will be refused, and its heartbeat says
// it lost the task). Once a task has a result, a post of the same result
// again (same fields, files with the same contents, even through new
// references, as a retrying Kolejka foreman uploads them) is answered with
// the stored one; any other is refused. A node that never held the task is
// refused, as is any post after the result was made by the server (SE),
// and any post for a cancelled task: cancelling is final, also for a node
// that finished the task before it heard (ErrCancelled).
//
// The files of an accepted result pass to the task's owner, as in Kolejka.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// NewResult is a result posted by a node.
type NewResult struct {
	TaskKey     string
	Poster      int64
	Description []byte            // canonical result JSON
	Files       map[string]string // file name → reference key
	// Fingerprint identifies the result's content: its canonical form
	// with each reference replaced by its blob (blobOf maps reference key
	// to blob hash).
	Fingerprint func(blobOf map[string]string) (string, error)
	Now         time.Time
}

// PostedResult is what PostResult did.
type PostedResult struct {
	Description []byte // the stored result
	Created     bool   // false: an identical result was already stored
	Late        bool   // accepted from a node that had lost its lease
	Callback    bool   // an outbox row was added
}

// PostResult records a result. Errors: ErrNotFound (no such task),
// ErrNotAssigned (the poster never held it), FileErrors (a reference is
// unknown or not the poster's), ErrResolved (another result exists),
// ErrCancelled (the task was cancelled).
func (s *Store) PostResult(ctx context.Context, r NewResult) (PostedResult, error) {
	var out PostedResult
	err := s.write(ctx, func(tx *sql.Tx) error {
		out = PostedResult{}
		var id, owner int64
		var state int
		var assignee sql.NullInt64
		var taskDesc []byte
		var url string
		err := tx.QueryRowContext(ctx, `SELECT id, user_id, state, assignee_id, description, callback_url FROM tasks WHERE key = ?`, r.TaskKey).
			Scan(&id, &owner, &state, &assignee, &taskDesc, &url)
		if err != nil {
			return rowErr(err, "read task")
		}
		current := assignee.Valid && assignee.Int64 == r.Poster && state == stateAssigned
		if !current {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM task_nodes WHERE task_id = ? AND user_id = ? LIMIT 1`, id, r.Poster).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotAssigned
			}
			if err != nil {
				return fmt.Errorf("unable to read assignments: %w", err)
			}
		}
		if state == stateCancelled {
			return ErrCancelled
		}
		blobOf, err := resolveRefs(ctx, tx, r.Files)
		if err != nil {
			return err
		}
		fp, err := r.Fingerprint(blobOf)
		if err != nil {
			return fmt.Errorf("unable to fingerprint result: %w", err)
		}
		if state == stateDone {
			var stored []byte
			var storedFP string
			err := tx.QueryRowContext(ctx, `SELECT description, fingerprint FROM results WHERE task_id = ?`, id).Scan(&stored, &storedFP)
			if err == nil && storedFP == fp {
				out.Description = stored
				return nil
			}
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("unable to read result: %w", err)
			}
			return ErrResolved
		}
		if err := checkRefs(ctx, tx, r.Files, r.Poster, false, nil); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO results (task_id, user_id, description, fingerprint, time_create) VALUES (?, ?, ?, ?, ?)`,
			id, r.Poster, r.Description, fp, us(r.Now)); err != nil {
			return fmt.Errorf("unable to record result: %w", err)
		}
		for name, ref := range r.Files {
			if _, err := tx.ExecContext(ctx, `UPDATE refs SET user_id = ? WHERE key = ?`, owner, ref); err != nil {
				return fmt.Errorf("unable to hand result file to the task's owner: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO result_files (task_id, name, ref) VALUES (?, ?, ?)`, id, name, ref); err != nil {
				return fmt.Errorf("unable to record result file: %w", err)
			}
		}
		// The task keeps the node that resolved it as its assignee, as in
		// Kolejka (lstask --assigned lists resolved tasks too).
		if _, err := tx.ExecContext(ctx, `UPDATE tasks SET state = ?, assignee_id = ?, lease_expire = NULL, time_finish = ?, status = ? WHERE id = ?`,
			stateDone, r.Poster, us(r.Now), string(ResultStatus(r.Description)), id); err != nil {
			return fmt.Errorf("unable to resolve task: %w", err)
		}
		if err := taskEnded(ctx, tx, id, string(ResultStatus(r.Description)), r.Now); err != nil {
			return err
		}
		out.Description, out.Created, out.Late = r.Description, true, !current
		if url != "" {
			if err := queueCallback(ctx, tx, r.TaskKey, url, taskDesc, r.Description, r.Now); err != nil {
				return err
			}
			out.Callback = true
		}
		return nil
	})
	return out, err
}

// resolveRefs maps each reference of files to its blob; unknown ones are a
// FileErrors.
func resolveRefs(ctx context.Context, tx *sql.Tx, files map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(files))
	var errs FileErrors
	for name, ref := range files {
		var blob string
		err := tx.QueryRowContext(ctx, `SELECT blob FROM refs WHERE key = ?`, ref).Scan(&blob)
		if errors.Is(err, sql.ErrNoRows) {
			errs = append(errs, &FileError{File: name, Ref: ref, Problem: "is unknown"})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("unable to read reference: %w", err)
		}
		out[ref] = blob
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// StoredResult is a task's result row.
type StoredResult struct {
	Description []byte
	Poster      int64 // 0: made by the server
	TimeCreate  time.Time
}

// Result reads the result of task key; ErrNotFound if there is none.
func (s *Store) Result(ctx context.Context, key string) (StoredResult, error) {
	var r StoredResult
	var poster sql.NullInt64
	var tc int64
	err := s.r.QueryRowContext(ctx, `
		SELECT r.description, r.user_id, r.time_create FROM results r JOIN tasks t ON t.id = r.task_id WHERE t.key = ?`, key).
		Scan(&r.Description, &poster, &tc)
	if err != nil {
		return StoredResult{}, rowErr(err, "read result")
	}
	r.Poster, r.TimeCreate = poster.Int64, fromUS(tc)
	return r, nil
}

// DeleteResult removes the result of task key. The task stays resolved: a
// task has one result, ever, so no node will post another.
func (s *Store) DeleteResult(ctx context.Context, key string) error {
	n, err := s.writeOne(ctx, "delete result", `DELETE FROM results WHERE task_id = (SELECT id FROM tasks WHERE key = ?)`, key)
	if err == nil && n == 0 {
		return ErrNotFound
	}
	return err
}

// callbackBody is what a callback POSTs: {"result": …, "task": …}.
func callbackBody(task, result []byte) ([]byte, error) {
	return json.Marshal(map[string]json.RawMessage{"task": task, "result": result})
}
