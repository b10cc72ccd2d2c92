package store

// This file owns workflow runs (issue 17): their rows, and the one write
// transaction that advances a run. The engine's state of a run
// (internal/workflow) and the steps' sources are opaque JSON here; the
// server's driver reads and changes them inside AdvanceRun, where the
// run's row, the ends of its tasks, the tasks it submits and those it
// cancels are read and written together: committed all or nothing, so a
// crash at any moment neither loses a step nor submits one twice.
//
// A step's task may use, besides its owner's references, the result files
// of the tasks of its own run (its inputs, ResultRef): the files of a
// result pass to the task's owner, the run's, and a run reads only its
// own tasks' results.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Run states as runs.state holds them (internal/workflow.RunState's).
const RunRunning = "running"

// NewRun is a run to record.
type NewRun struct {
	Key   string
	Owner int64
	State string // RunRunning
	Run   []byte // the engine's JSON
	Steps []byte // the steps' sources, as the server keeps them
	Now   time.Time
}

// RunRow is a run's row.
type RunRow struct {
	ID         int64
	Key        string
	Owner      int64
	OwnerName  string
	State      string
	Run        []byte
	Steps      []byte
	TimeCreate time.Time
	TimeFinish time.Time // zero while running
}

// InsertRun records a new run, whose steps' files are references its
// owner may use (readAll: anyone's): a FileErrors naming each that is not,
// with nothing recorded. files maps a name for errors ("tasks[\"a\"].files[\"x\"]")
// to a reference. ErrExists if the key is taken.
func (s *Store) InsertRun(ctx context.Context, r NewRun, files map[string]string, readAll bool) (int64, error) {
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		id, err = insertRun(ctx, tx, r, files, readAll)
		return err
	})
	return id, err
}

// insertRun is InsertRun's body, in the caller's transaction (a trigger's
// firing records itself and its run together).
func insertRun(ctx context.Context, tx *sql.Tx, r NewRun, files map[string]string, readAll bool) (int64, error) {
	if err := checkRefs(ctx, tx, files, r.Owner, readAll, nil); err != nil {
		return 0, err
	}
	var id int64
	err := tx.QueryRowContext(ctx, `
		INSERT INTO runs (key, user_id, state, run, steps, time_create) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		r.Key, r.Owner, r.State, r.Run, r.Steps, us(r.Now)).Scan(&id)
	if isUnique(err) {
		return 0, fmt.Errorf("unable to record run %s: %w", r.Key, ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("unable to record run: %w", err)
	}
	return id, nil
}

const runColumns = `r.id, r.key, r.user_id, u.name, r.state, r.run, r.steps, r.time_create, r.time_finish`

const runFrom = `FROM runs r JOIN users u ON u.id = r.user_id`

func scanRun(row scanner) (RunRow, error) {
	var r RunRow
	var tc int64
	var tf sql.NullInt64
	if err := row.Scan(&r.ID, &r.Key, &r.Owner, &r.OwnerName, &r.State, &r.Run, &r.Steps, &tc, &tf); err != nil {
		return RunRow{}, err
	}
	r.TimeCreate, r.TimeFinish = fromUS(tc), fromNullUS(tf)
	return r, nil
}

// Run reads a run by key: ErrNotFound if there is none.
func (s *Store) Run(ctx context.Context, key string) (RunRow, error) {
	r, err := scanRun(s.r.QueryRowContext(ctx, `SELECT `+runColumns+` `+runFrom+` WHERE r.key = ?`, key))
	if err != nil {
		return RunRow{}, rowErr(err, "read run")
	}
	return r, nil
}

// Runs lists the runs of owner (every run with all), oldest first.
func (s *Store) Runs(ctx context.Context, owner int64, all bool) ([]RunRow, error) {
	q := `SELECT ` + runColumns + ` ` + runFrom
	var args []any
	if !all {
		q += ` WHERE r.user_id = ?`
		args = append(args, owner)
	}
	return queryRows(ctx, s.r, "list runs", func(rows *sql.Rows) (RunRow, error) { return scanRun(rows) }, q+` ORDER BY r.id`, args...)
}

// RunningRuns lists the keys of the runs still running, oldest first.
func (s *Store) RunningRuns(ctx context.Context) ([]string, error) {
	return queryColumn[string](ctx, s.r, "list running runs", `SELECT key FROM runs WHERE state = ? ORDER BY id`, RunRunning)
}

// RunOfTask is the key of the run task key is a step of, "" if none (or
// no such task).
func (s *Store) RunOfTask(ctx context.Context, key string) (string, error) {
	var run string
	err := s.r.QueryRowContext(ctx, `SELECT r.key FROM tasks t JOIN runs r ON r.id = t.run_id WHERE t.key = ?`, key).Scan(&run)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("unable to read the run of a task: %w", err)
	}
	return run, nil
}

// RunTask is a task of a run as `workflow show` lists it.
type RunTask struct {
	Key          string
	Step         string
	Item         int // the instance's index; -1: a step that runs once
	State        State
	AssigneeName string
	TimeCreate   time.Time
	TimeAssign   time.Time
	TimeFinish   time.Time
}

// RunTasks lists the tasks of run id, in submission order.
func (s *Store) RunTasks(ctx context.Context, runID int64) ([]RunTask, error) {
	return queryRows(ctx, s.r, "list a run's tasks", func(rows *sql.Rows) (RunTask, error) {
		var t RunTask
		var state int
		var tc int64
		var ta, tf sql.NullInt64
		if err := rows.Scan(&t.Key, &t.Step, &t.Item, &state, &t.AssigneeName, &tc, &ta, &tf); err != nil {
			return t, err
		}
		t.State = State(state)
		t.TimeCreate, t.TimeAssign, t.TimeFinish = fromUS(tc), fromNullUS(ta), fromNullUS(tf)
		return t, nil
	}, `SELECT t.key, t.step, t.item_index, t.state, COALESCE(a.name, ''), t.time_create, t.time_assign, t.time_finish
		FROM tasks t LEFT JOIN users a ON a.id = t.assignee_id WHERE t.run_id = ? ORDER BY t.id`, runID)
}

// ResultFileBlob is the blob (hash and size) of file path of task key's
// result: ErrNotFound if the task has no result or the result no such file.
func (s *Store) ResultFileBlob(ctx context.Context, key, path string) (string, int64, error) {
	var hash string
	var size int64
	err := s.r.QueryRowContext(ctx, `
		SELECT b.hash, b.size FROM tasks t
		JOIN result_files f ON f.task_id = t.id JOIN refs r ON r.key = f.ref JOIN blobs b ON b.hash = r.blob
		WHERE t.key = ? AND f.name = ?`, key, path).Scan(&hash, &size)
	if err != nil {
		return "", 0, rowErr(err, "read a result file")
	}
	return hash, size, nil
}

// TaskEnd is how a task of a run ended: Done with its result, or Cancelled.
type TaskEnd struct {
	State  State
	Result []byte // the stored result JSON, with Done
}

// RunTx is a run being advanced, inside AdvanceRun's transaction.
type RunTx struct {
	ctx    context.Context
	tx     *sql.Tx
	now    time.Time
	Row    RunRow
	forget []int64
	queued bool
	// owed: the advance is not complete (it needs files read outside the
	// transaction): the run stays owed one (migration 15).
	owed bool
}

// StillOwed says the advance must go on after this transaction: the run
// keeps its mark, so that another server advances it if this one dies.
func (a *RunTx) StillOwed() { a.owed = true }

// Ends reads how those of keys that ended (done or cancelled) ended; a
// key of no task of this run (a task deleted by its owner) ends as
// Cancelled, so that the run does not wait for it forever. One statement
// per 500 keys: a fan-out's advance asks about every task it has
// submitted.
func (a *RunTx) Ends(keys []string) (map[string]TaskEnd, error) {
	out := map[string]TaskEnd{}
	for chunk := range slices.Chunk(keys, 500) {
		args := []any{a.Row.ID}
		for _, k := range chunk {
			args = append(args, k)
		}
		rows, err := queryRows(a.ctx, a.tx, "read the ends of a run's tasks", func(rows *sql.Rows) (struct {
			key string
			end TaskEnd
		}, error) {
			var v struct {
				key string
				end TaskEnd
			}
			var state int
			err := rows.Scan(&v.key, &state, &v.end.Result)
			v.end.State = State(state)
			return v, err
		}, `SELECT t.key, t.state, r.description FROM tasks t LEFT JOIN results r ON r.task_id = t.id
			WHERE t.run_id = ? AND t.key IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		found := make(map[string]bool, len(rows))
		for _, v := range rows {
			found[v.key] = true
			if v.end.State == Done || v.end.State == Cancelled {
				out[v.key] = v.end
			}
		}
		for _, k := range chunk {
			if !found[k] {
				out[k] = TaskEnd{State: Cancelled}
			}
		}
	}
	return out, nil
}

// ResultRef is the reference of file path of the result of task key, a
// task of this run: ErrNotFound if there is none.
func (a *RunTx) ResultRef(key, path string) (string, error) {
	var ref string
	err := a.tx.QueryRowContext(a.ctx, `
		SELECT f.ref FROM tasks t JOIN result_files f ON f.task_id = t.id
		WHERE t.key = ? AND t.run_id = ? AND f.name = ?`, key, a.Row.ID, path).Scan(&ref)
	if err != nil {
		return "", rowErr(err, "read a result file")
	}
	return ref, nil
}

// Insert records task t as instance item of step of this run, as
// InsertTask does (the same checks and errors); inputs are references
// ResultRef gave, which t's files may use.
func (a *RunTx) Insert(t NewTask, step string, item int, inputs map[string]bool) error {
	requires, err := json.Marshal(nonNil(t.Requires))
	if err != nil {
		return fmt.Errorf("unable to encode requires: %w", err)
	}
	t.RunID, t.Step, t.Item = a.Row.ID, step, item
	if _, err := insertTask(a.ctx, a.tx, t, string(requires), inputs); err != nil {
		return err
	}
	a.queued = true
	return nil
}

// Cancel cancels task key, as Store.Cancel does; a task that has its
// result or is cancelled already is left as it is.
func (a *RunTx) Cancel(key string) error {
	return cancelIn(a.ctx, a.tx, key, a.now, &a.forget)
}

// cancelIn cancels task key in a transaction that also does other work
// (a run's advance, a trigger's firing): a task that ended or is gone is
// left as it is; a queued one's id joins forget, for the dequeue's cache
// once the transaction commits.
func cancelIn(ctx context.Context, tx *sql.Tx, key string, now time.Time, forget *[]int64) error {
	res, id, err := cancelTask(ctx, tx, key, now)
	if errors.Is(err, ErrFinished) || errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if res.Was == Queued {
		*forget = append(*forget, id)
	}
	return nil
}

// Save writes the run's new engine state, its steps' sources (nil: as
// they are) and its state; a state other than running sets its
// time_finish, running clears it (a retried run).
func (a *RunTx) Save(run, steps []byte, state string) error {
	var finish any
	if state != RunRunning {
		finish = us(a.now)
	}
	if steps == nil {
		steps = a.Row.Steps
	}
	if _, err := a.tx.ExecContext(a.ctx, `UPDATE runs SET run = ?, steps = ?, state = ?, time_finish = ? WHERE id = ?`,
		run, steps, state, finish, a.Row.ID); err != nil {
		return fmt.Errorf("unable to save run: %w", err)
	}
	if state != RunRunning && a.Row.State == RunRunning {
		if err := runEvent(a.ctx, a.tx, a.Row.ID, state, a.now); err != nil {
			return err
		}
	}
	a.Row.Run, a.Row.Steps, a.Row.State = run, steps, state
	return nil
}

// taskEnded records, in the transaction that stores task id's end
// (status), what the end owes: its run's advance, when the task is a
// workflow step (see migration 15), and its result triggers' event.
func taskEnded(ctx context.Context, tx *sql.Tx, id int64, status string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `
		UPDATE runs SET advance_due = ? WHERE advance_due IS NULL AND id = (SELECT run_id FROM tasks WHERE id = ?)`,
		us(now), id); err != nil {
		return fmt.Errorf("unable to mark the run of a step's end: %w", err)
	}
	return taskEvent(ctx, tx, id, status, now)
}

// DueAdvances lists the runs owed an advance since before before: a step
// of theirs ended, and the server that stored the end did not advance
// them (it died, or its advance failed).
func (s *Store) DueAdvances(ctx context.Context, before time.Time) ([]string, error) {
	return queryRows(ctx, s.r, "read runs", func(rows *sql.Rows) (key string, err error) {
		err = rows.Scan(&key)
		return key, err
	}, `SELECT key FROM runs WHERE advance_due IS NOT NULL AND advance_due < ? ORDER BY advance_due LIMIT 1000`, us(before))
}

// AdvanceRun runs fn on run key in one write transaction, committed if fn
// returns nil: fn reads the run (a.Row) and its tasks' ends, inserts and
// cancels tasks and saves the run, all or nothing. ErrNotFound if there is
// no such run. It reports whether tasks were queued (a dequeue may wake).
func (s *Store) AdvanceRun(ctx context.Context, key string, now time.Time, fn func(a *RunTx) error) (queued bool, err error) {
	var a *RunTx
	err = s.write(ctx, func(tx *sql.Tx) error {
		row, err := scanRun(tx.QueryRowContext(ctx, `SELECT `+runColumns+` `+runFrom+` WHERE r.key = ?`, key))
		if err != nil {
			return rowErr(err, "read run")
		}
		a = &RunTx{ctx: ctx, tx: tx, now: now, Row: row}
		if err := fn(a); err != nil {
			return err
		}
		if a.owed {
			return nil
		}
		// Every end committed so far is applied: the run owes nothing.
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET advance_due = NULL WHERE key = ? AND advance_due IS NOT NULL`, key); err != nil {
			return fmt.Errorf("unable to record a run's advance: %w", err)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for _, id := range a.forget {
		s.forget(id)
	}
	return a.queued, nil
}
