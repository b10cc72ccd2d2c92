package store

// This file owns the task lifecycle as users see it: listing one's tasks
// (ListTasksOf), the whole story of one (TaskDetail) and cancelling
// (Cancel).
//
// Cancelling: a queued task becomes cancelled (state 3) and is never
// handed out (dequeues read only queued ids). An assigned task becomes
// cancelled with its assignee and lease cleared: the node's next
// heartbeat finds it lost (the foreman kills it), and the node stops
// counting as holding it at once (nodeOf reads assigned rows only). A
// cancelled task takes no result, late or not (PostResult). Cancelling a
// cancelled task changes nothing and succeeds; a finished task (state 2)
// is ErrFinished.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Cancelled is the state of a task its owner or a manager cancelled.
const Cancelled State = stateCancelled

// ErrFinished is a cancel of a task that already has its result.
var ErrFinished = errors.New("task already finished")

// ErrCancelled is a result posted for a cancelled task.
var ErrCancelled = errors.New("task was cancelled")

// TaskQuery selects tasks for ListTasksOf. Zero fields do not filter.
type TaskQuery struct {
	Owner  int64  // the owner's user id; 0: every user's tasks
	State  *State // only tasks in this state
	Queue  string // only tasks of this queue
	Type   string // only tasks rendered from this task type
	Status string // only tasks that finished with this status ("OK", "TLE", …)
	Before string // only tasks submitted before this one (its key): the next page
	Limit  int    // at most this many (≤ 0: 50)
}

// TaskSummary is one task of a listing.
type TaskSummary struct {
	Key        string
	OwnerName  string
	State      State
	Queue      string
	TypeName   string
	Node       string // the node of the last hand-out, if any
	Attempts   int
	TimeCreate time.Time
	TimeFinish time.Time // zero: not finished
	Run        string    // the key of the workflow run it is a step of, if any
	Step       string    // with Run: the step
	Item       int       // with Run: the instance's index in its step
	Status     string    // the status it finished with (its result's), if done
}

// resultStatus is the status task t finished with (its result's), empty
// if none.
const resultStatus = `t.status`

// lastNode names the node of a task's last hand-out (task_nodes keeps
// them; a hand-back removes its row).
const lastNode = `COALESCE((SELECT u.name FROM task_nodes n JOIN users u ON u.id = n.user_id
	WHERE n.task_id = t.id ORDER BY n.attempt DESC LIMIT 1), '')`

// runOf is the key of the run task t is a step of, ” if none.
const runOf = `COALESCE((SELECT r.key FROM runs r WHERE r.id = t.run_id), '')`

// ListTasksOf lists tasks newest first. A user's own tasks are read from
// the index tasks_owner(user_id, id) backwards; every user's from the
// primary key backwards, or tasks_queue(state, id) with a state filter.
// Filters the index does not serve (queue, type, status) are applied to rows as
// they come, so a rare queue or type may read more rows than the page
// holds. ErrNotFound if Before names no task.
func (s *Store) ListTasksOf(ctx context.Context, q TaskQuery) ([]TaskSummary, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	var before int64
	if q.Before != "" {
		if err := s.r.QueryRowContext(ctx, `SELECT id FROM tasks WHERE key = ?`, q.Before).Scan(&before); err != nil {
			return nil, rowErr(err, "read task")
		}
	}
	query, args := listSQL(q, before)
	return queryRows(ctx, s.r, "list tasks", func(rows *sql.Rows) (TaskSummary, error) {
		var ts TaskSummary
		var state int
		var tc int64
		var tf sql.NullInt64
		err := rows.Scan(&ts.Key, &ts.OwnerName, &state, &ts.Queue, &ts.TypeName, &ts.Node, &ts.Attempts, &tc, &tf, &ts.Run, &ts.Step, &ts.Item, &ts.Status)
		ts.State, ts.TimeCreate, ts.TimeFinish = State(state), fromUS(tc), fromNullUS(tf)
		return ts, err
	}, query, args...)
}

// listSQL is ListTasksOf's query: before, if not 0, is the id of the
// task the page starts after.
func listSQL(q TaskQuery, before int64) (string, []any) {
	query := `SELECT t.key, o.name, t.state, t.queue, t.type_name, ` + lastNode + `, t.attempts, t.time_create, t.time_finish, ` + runOf + `, t.step, t.item_index, ` + resultStatus + `
		FROM tasks t JOIN users o ON o.id = t.user_id WHERE 1 = 1`
	var args []any
	if q.Owner != 0 {
		query += ` AND t.user_id = ?`
		args = append(args, q.Owner)
	}
	if before != 0 {
		query += ` AND t.id < ?`
		args = append(args, before)
	}
	if q.State != nil {
		query += ` AND t.state = ?`
		args = append(args, int(*q.State))
	}
	if q.Queue != "" {
		query += ` AND t.queue = ?`
		args = append(args, q.Queue)
	}
	if q.Type != "" {
		query += ` AND t.type_name = ?`
		args = append(args, q.Type)
	}
	if q.Status != "" {
		query += ` AND t.state = 2 AND ` + resultStatus + ` = ?`
		args = append(args, q.Status)
	}
	query += ` ORDER BY t.id DESC LIMIT ?`
	args = append(args, q.Limit)
	return query, args
}

// Attempt is one hand-out of a task to a node.
type Attempt struct {
	Attempt    int
	Node       string
	TimeAssign time.Time
}

// TaskDetail is everything known about a task.
type TaskDetail struct {
	Task
	Queue        string
	TypeName     string
	Origin       []byte // tasktype.Origin as JSON; nil for a task posted as it is
	Node         string // the node of the last hand-out, if any
	History      []Attempt
	TimeStart    time.Time // the last hand-out; zero: never handed out
	TimeFinish   time.Time // result accepted or cancelled; zero: neither
	ResultStatus string    // the result's verdict ("status"), if it has a result
	Run          string    // the key of the workflow run it is a step of, if any
	Step         string    // with Run: the step
	Item         int       // with Run: the instance's index in its step
}

// TaskDetail reads a task with its queue, type, origin, hand-outs, times
// and its result's verdict, in one read transaction.
func (s *Store) TaskDetail(ctx context.Context, key string) (TaskDetail, error) {
	tx, err := s.r.BeginTx(ctx, s.snapshot())
	if err != nil {
		return TaskDetail{}, fmt.Errorf("unable to begin read: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read only: nothing to keep or lose
	var d TaskDetail
	d.Task, err = scanTask(tx.QueryRowContext(ctx, `SELECT `+taskColumns+` `+taskFrom+` WHERE t.key = ?`, key))
	if err != nil {
		return TaskDetail{}, rowErr(err, "read task")
	}
	var tf sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT t.queue, t.type_name, t.origin, t.time_finish, `+runOf+`, t.step, t.item_index FROM tasks t WHERE t.id = ?`, d.ID).
		Scan(&d.Queue, &d.TypeName, &d.Origin, &tf, &d.Run, &d.Step, &d.Item); err != nil {
		return TaskDetail{}, rowErr(err, "read task")
	}
	d.TimeFinish = fromNullUS(tf)
	d.History, err = queryRows(ctx, tx, "read hand-outs", func(rows *sql.Rows) (Attempt, error) {
		var a Attempt
		var ta int64
		err := rows.Scan(&a.Attempt, &a.Node, &ta)
		a.TimeAssign = fromUS(ta)
		return a, err
	}, `SELECT n.attempt, u.name, n.time_assign FROM task_nodes n JOIN users u ON u.id = n.user_id WHERE n.task_id = ? ORDER BY n.attempt`, d.ID)
	if err != nil {
		return TaskDetail{}, err
	}
	if n := len(d.History); n > 0 {
		d.Node, d.TimeStart = d.History[n-1].Node, d.History[n-1].TimeAssign
	}
	if d.History == nil {
		d.History = []Attempt{}
	}
	var res []byte
	err = tx.QueryRowContext(ctx, `SELECT description FROM results WHERE task_id = ?`, d.ID).Scan(&res)
	switch {
	case err == nil:
		var v struct {
			Status string `json:"status"`
		}
		// A result this server stored always parses; one that did not
		// would only lack its verdict here.
		_ = json.Unmarshal(res, &v)
		d.ResultStatus = v.Status
	case !errors.Is(err, sql.ErrNoRows):
		return TaskDetail{}, fmt.Errorf("unable to read result: %w", err)
	}
	return d, nil
}

// CancelResult says what Cancel found and did.
type CancelResult struct {
	Was  State // the task's state before
	Node int64 // the node that held it (Was == Assigned), else 0
}

// Cancel cancels task key (see the file's comment): ErrNotFound if there
// is no such task, ErrFinished if it has its result; a cancelled task is
// left as it is (Was == Cancelled).
func (s *Store) Cancel(ctx context.Context, key string, now time.Time) (CancelResult, error) {
	var out CancelResult
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		out, id, err = cancelTask(ctx, tx, key, now)
		return err
	})
	if err == nil && out.Was == Queued {
		s.forget(id) // no dequeue reads it again
	}
	return out, err
}

// cancelTask is Cancel's body, in the caller's transaction; it returns
// the task's id, for the caller to forget once committed.
func cancelTask(ctx context.Context, tx *sql.Tx, key string, now time.Time) (CancelResult, int64, error) {
	var out CancelResult
	var id int64
	var state int
	var assignee sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT id, state, assignee_id FROM tasks WHERE key = ?`, key).Scan(&id, &state, &assignee); err != nil {
		return out, 0, rowErr(err, "read task")
	}
	out.Was = State(state)
	switch out.Was {
	case Done:
		return out, id, ErrFinished
	case Cancelled:
		return out, id, nil
	case Assigned:
		out.Node = assignee.Int64
	}
	// time_assign stays: it is when the cancelled run started.
	if _, err := tx.ExecContext(ctx, `
		UPDATE tasks SET state = ?, assignee_id = NULL, lease_expire = NULL, assigned_limits = NULL, time_finish = ?
		WHERE id = ?`, stateCancelled, us(now), id); err != nil {
		return out, id, fmt.Errorf("unable to cancel task: %w", err)
	}
	return out, id, nil
}

// MinuteCount is how many tasks ended in one minute in one way.
type MinuteCount struct {
	Minute time.Time // the minute's start
	State  State     // Done or Cancelled
	Status string    // with Done: the result's status
	N      int
}

// FinishedPerMinute counts the tasks that ended (a result or a cancel)
// since since, by minute, state and result status, oldest first. It reads
// the index tasks_finish, so it costs the rows of the span, not of the
// table.
func (s *Store) FinishedPerMinute(ctx context.Context, since time.Time) ([]MinuteCount, error) {
	return queryRows(ctx, s.r, "count finished tasks", func(rows *sql.Rows) (MinuteCount, error) {
		var m MinuteCount
		var minute int64
		var state int
		err := rows.Scan(&minute, &state, &m.Status, &m.N)
		m.Minute, m.State = time.Unix(minute*60, 0).UTC(), State(state)
		return m, err
	}, `SELECT t.time_finish / 60000000 AS minute, t.state, t.status, COUNT(*)
		FROM tasks t WHERE t.time_finish >= ? AND t.time_finish IS NOT NULL
		GROUP BY 1, 2, 3 ORDER BY 1`, us(since))
}

// TaskState is a task's state as a live page follows it.
type TaskState struct {
	Key      string
	Owner    int64
	Assignee int64 // 0: none
	State    State
	Status   string    // the status it finished with, if done
	Node     string    // the node of the last hand-out, if any
	Finish   time.Time // zero: not finished
}

// TaskStates reads the states of those of keys that exist, in one query
// (at most a few hundred keys: a page's).
func (s *Store) TaskStates(ctx context.Context, keys []string) ([]TaskState, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	return queryRows(ctx, s.r, "read task states", func(rows *sql.Rows) (TaskState, error) {
		var ts TaskState
		var state int
		var tf sql.NullInt64
		err := rows.Scan(&ts.Key, &ts.Owner, &ts.Assignee, &state, &ts.Status, &ts.Node, &tf)
		ts.State, ts.Finish = State(state), fromNullUS(tf)
		return ts, err
	}, `SELECT t.key, t.user_id, COALESCE(t.assignee_id, 0), t.state, `+resultStatus+`, `+lastNode+`, t.time_finish
		FROM tasks t WHERE t.key IN (?`+strings.Repeat(", ?", len(keys)-1)+`)`, args...)
}
