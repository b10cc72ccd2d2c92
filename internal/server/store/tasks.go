package store

// This file owns task rows: submission (with the check that every file's
// reference exists and may be used by the submitter), reading, deleting
// and the admin listing.
//
// Lifecycle of a task: queued (state 0) → assigned to a node by a dequeue
// (1, with a lease) → done (2) when a result is accepted, or cancelled (3,
// lifecycle.go) by its owner or a manager before that. An assigned task
// whose lease runs out goes back to queued, or to done with a server-made
// SE result after too many attempts (queue.go). Deleting a task removes its
// result too; the references it used stay with their owners.

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/queue"
)

// FileError is a task or result file whose reference cannot be used.
type FileError struct {
	File    string // the file's name in the task or result
	Ref     string
	Problem string // "is unknown", "belongs to another user"
}

func (e *FileError) Error() string {
	return fmt.Sprintf("files[%q].reference: reference %q %s", e.File, e.Ref, e.Problem)
}

// FileErrors joins several *FileError; it unwraps to them.
type FileErrors []*FileError

func (es FileErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap gives errors.As access to each *FileError.
func (es FileErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// State is where a task is in its lifecycle.
type State int

// Task states.
const (
	Queued   State = stateQueued
	Assigned State = stateAssigned
	Done     State = stateDone
)

// Lifecycle is the state as the API's lifecycle names it (queued,
// running, done, cancelled): the one naming the API and the web UI show.
func (s State) Lifecycle() string {
	switch s {
	case Queued:
		return api.StateQueued
	case Assigned:
		return api.StateRunning
	case Done:
		return api.StateDone
	case Cancelled:
		return api.StateCancelled
	}
	return s.String()
}

func (s State) String() string {
	switch s {
	case Queued:
		return "unassigned"
	case Assigned:
		return "assigned"
	case Done:
		return "resolved"
	case Cancelled:
		return "cancelled"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// NewTask is a task to record. Description is the canonical task JSON (with
// the server's id and caps); Limits and Requires are what the scheduler
// reads, kept apart so a dequeue need not parse whole tasks.
type NewTask struct {
	Key         string
	Owner       int64
	Submitter   string // the owner's name, for the queue's rules
	ReadAll     bool   // the owner may use any user's references (inspectors, managers)
	Description []byte
	Limits      []byte // JSON limits object
	Requires    []string
	Exclusive   bool
	CallbackURL string
	Files       map[string]string // file name → reference key
	Queue       string            // the queue's name ("" is the default queue)
	TypeName    string            // the task type it was rendered from, if any
	TypeVersion int               // with TypeName: its version, whose files the task may use
	Origin      []byte            // tasktype.Origin as JSON, with TypeName
	RunID       int64             // the workflow run it is a step of (0: none; set by AdvanceRun)
	Step        string            // with RunID: the step's name
	Item        int               // with RunID: the instance's index in a step with items, -1 in one that runs once
	Now         time.Time
}

// Task is a task row.
type Task struct {
	ID           int64
	Key          string
	Owner        int64
	OwnerName    string
	Description  []byte
	State        State
	Assignee     int64 // 0: none
	AssigneeName string
	TimeCreate   time.Time
	TimeAssign   time.Time
	LeaseExpire  time.Time
	Attempts     int
	CallbackURL  string
	HasResult    bool
}

// checkRefs checks that every reference of files exists and is the user's
// to use (any user's with readAll; also those in granted, a type's files
// in a task made from it): a FileErrors naming each that is not.
func checkRefs(ctx context.Context, tx *sql.Tx, files map[string]string, userID int64, readAll bool, granted map[string]bool) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var errs FileErrors
	for _, name := range names {
		ref := files[name]
		var owner int64
		err := tx.QueryRowContext(ctx, `SELECT user_id FROM refs WHERE key = ?`, ref).Scan(&owner)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			errs = append(errs, &FileError{File: name, Ref: ref, Problem: "is unknown"})
		case err != nil:
			return fmt.Errorf("unable to read reference: %w", err)
		case owner != userID && !readAll && !granted[ref]:
			errs = append(errs, &FileError{File: name, Ref: ref, Problem: "belongs to another user"})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// InsertTask records a submitted task: a FileErrors if a reference is
// unknown or not the owner's to use, ErrExists if the key is taken,
// a *QueueError if its queue does not exist or does not take the
// submitter's tasks.
func (s *Store) InsertTask(ctx context.Context, t NewTask) (int64, error) {
	requires, err := json.Marshal(nonNil(t.Requires))
	if err != nil {
		return 0, fmt.Errorf("unable to encode requires: %w", err)
	}
	var id int64
	err = s.write(ctx, func(tx *sql.Tx) error {
		var err error
		id, err = insertTask(ctx, tx, t, string(requires), nil)
		return err
	})
	return id, err
}

// insertTask is InsertTask's body, in the caller's transaction: a run's
// advance inserts its steps' tasks together with the run's new state.
// extra are references the task may use beyond its owner's and its type's
// (a run's inputs).
func insertTask(ctx context.Context, tx *sql.Tx, t NewTask, requires string, extra map[string]bool) (int64, error) {
	var id int64
	err := func() error {
		granted, err := typeRefs(ctx, tx, t.TypeName, t.TypeVersion, t.Owner)
		if err != nil {
			return err
		}
		for r := range extra {
			if granted == nil {
				granted = map[string]bool{}
			}
			granted[r] = true
		}
		if err := checkRefs(ctx, tx, t.Files, t.Owner, t.ReadAll, granted); err != nil {
			return err
		}
		if err := mayQueue(ctx, tx, cmp.Or(t.Queue, "default"), t.Submitter); err != nil {
			return err
		}
		var runID any // NULL for a task of no run
		if t.RunID != 0 {
			runID = t.RunID
		}
		err = tx.QueryRowContext(ctx, `
			INSERT INTO tasks (key, user_id, description, limits, requires, exclusive, callback_url, state, time_create, time_queued,
				queue, type_name, origin, run_id, step, item_index)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			t.Key, t.Owner, t.Description, t.Limits, requires, t.Exclusive, t.CallbackURL, stateQueued, us(t.Now), us(t.Now),
			cmp.Or(t.Queue, "default"), t.TypeName, t.Origin, runID, t.Step, t.Item).Scan(&id)
		if isUnique(err) {
			return fmt.Errorf("unable to record task %s: %w", t.Key, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("unable to record task: %w", err)
		}
		for name, ref := range t.Files {
			if _, err := tx.ExecContext(ctx, `INSERT INTO task_files (task_id, name, ref) VALUES (?, ?, ?)`, id, name, ref); err != nil {
				return fmt.Errorf("unable to record task file: %w", err)
			}
		}
		return nil
	}()
	return id, err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const taskColumns = `t.id, t.key, t.user_id, o.name, t.description, t.state, COALESCE(t.assignee_id, 0), COALESCE(a.name, ''),
	t.time_create, t.time_assign, t.lease_expire, t.attempts, t.callback_url, EXISTS (SELECT 1 FROM results r WHERE r.task_id = t.id)`

const taskFrom = `FROM tasks t JOIN users o ON o.id = t.user_id LEFT JOIN users a ON a.id = t.assignee_id`

type scanner interface{ Scan(...any) error }

func scanTask(row scanner) (Task, error) {
	var t Task
	var state int
	var tc int64
	var ta, le sql.NullInt64
	err := row.Scan(&t.ID, &t.Key, &t.Owner, &t.OwnerName, &t.Description, &state, &t.Assignee, &t.AssigneeName,
		&tc, &ta, &le, &t.Attempts, &t.CallbackURL, &t.HasResult)
	if err != nil {
		return Task{}, err
	}
	t.State = State(state)
	t.TimeCreate, t.TimeAssign, t.LeaseExpire = fromUS(tc), fromNullUS(ta), fromNullUS(le)
	return t, nil
}

// Task reads a task by key.
func (s *Store) Task(ctx context.Context, key string) (Task, error) {
	t, err := scanTask(s.r.QueryRowContext(ctx, `SELECT `+taskColumns+` `+taskFrom+` WHERE t.key = ?`, key))
	if err != nil {
		return Task{}, rowErr(err, "read task")
	}
	return t, nil
}

// DeleteTask removes a task, its files' links, its result and its
// assignment history. ErrNotFound if there is no such task.
func (s *Store) DeleteTask(ctx context.Context, key string) error {
	n, err := s.writeOne(ctx, "delete task", `DELETE FROM tasks WHERE key = ?`, key)
	if err == nil && n == 0 {
		return ErrNotFound
	}
	return err
}

// TaskFilter selects tasks for ListTasks, as Kolejka's lstask: Assigned
// means "has an assignee" (queued tasks have none; resolved tasks keep the
// node that resolved them), Resolved means "a result was accepted". Nil
// fields do not filter.
type TaskFilter struct {
	Assigned *bool
	Resolved *bool
}

// ListTasks lists tasks in submission order.
func (s *Store) ListTasks(ctx context.Context, f TaskFilter) ([]Task, error) {
	q := `SELECT ` + taskColumns + ` ` + taskFrom + ` WHERE 1 = 1`
	var args []any
	if f.Assigned != nil {
		if *f.Assigned {
			q += ` AND t.assignee_id IS NOT NULL`
		} else {
			q += ` AND t.assignee_id IS NULL`
		}
	}
	if f.Resolved != nil {
		if *f.Resolved {
			q += ` AND t.state = ?`
		} else {
			q += ` AND t.state <> ?`
		}
		args = append(args, stateDone)
	}
	return queryRows(ctx, s.r, "list tasks", func(rows *sql.Rows) (Task, error) { return scanTask(rows) }, q+` ORDER BY t.id`, args...)
}

// TaskFileRefs lists the references a task's files use.
func (s *Store) TaskFileRefs(ctx context.Context, key string) (map[string]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT f.name, f.ref FROM task_files f JOIN tasks t ON t.id = f.task_id WHERE t.key = ?`, key)
	if err != nil {
		return nil, fmt.Errorf("unable to list task files: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n, r string
		if err := rows.Scan(&n, &r); err != nil {
			return nil, fmt.Errorf("unable to list task files: %w", err)
		}
		out[n] = r
	}
	return out, rows.Err()
}

// QueueError is a task refused by its queue: the queue does not exist
// (Err is ErrNotFound) or is private to others (Err wraps queue.ErrDenied).
type QueueError struct {
	Queue string
	Err   error
}

func (e *QueueError) Error() string {
	if errors.Is(e.Err, ErrNotFound) {
		return fmt.Sprintf("no queue named %q", e.Queue)
	}
	return e.Err.Error()
}

func (e *QueueError) Unwrap() error { return e.Err }

// mayQueue applies the rules of queue name to a task of submitter, in the
// inserting transaction: a queue removed or made private meanwhile cannot
// be left holding a task its rules refuse.
func mayQueue(ctx context.Context, tx *sql.Tx, name, submitter string) error {
	var q queue.Queue
	var subs string
	err := tx.QueryRowContext(ctx, `SELECT private, submitters FROM queues WHERE name = ?`, name).Scan(&q.Private, &subs)
	if errors.Is(err, sql.ErrNoRows) {
		return &QueueError{Queue: name, Err: ErrNotFound}
	}
	if err != nil {
		return fmt.Errorf("unable to read queue: %w", err)
	}
	if err := json.Unmarshal([]byte(subs), &q.Submitters); err != nil {
		return fmt.Errorf("unable to read queue %q: %w", name, err)
	}
	q.Name = name
	if err := q.MaySubmit(submitter); err != nil {
		return &QueueError{Queue: name, Err: err}
	}
	return nil
}
