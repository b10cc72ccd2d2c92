package store

// This file owns the queues table: adding, listing (with each queue's
// figures), pausing and removing named queues (their rules are package
// queue's). A task's queue is its name in tasks.queue; tasks_queue_wait
// (queue, state, id) finds a queue's tasks in order, and queue_counts
// (kept by triggers, migration step 9) its queued and running counts.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kolejka-go/kolejka/internal/queue"
	"github.com/kolejka-go/kolejka/spec"
)

// QueueInfo is a queue with its figures.
type QueueInfo struct {
	queue.Queue
	TimeCreate time.Time
	Depth      int64 // queued tasks
	Running    int64 // assigned tasks
	// Oldest is when the task at the queue's head (the next handed out)
	// last entered the queue; zero when the queue is empty.
	Oldest time.Time
}

// ErrDefaultQueue is an attempt to remove the default queue, where every
// task of Kolejka's clients goes.
var ErrDefaultQueue = errors.New("the default queue cannot be removed")

// AddQueue records a new queue (checked with queue.Queue.Check). Its
// submitters must be clients and its nodes processors: a name that is
// neither is a *queue.FieldError naming the list, so that a typo does not
// silently shut a private queue. A taken name is ErrExists.
func (s *Store) AddQueue(ctx context.Context, q queue.Queue, now time.Time) error {
	if err := q.Check(); err != nil {
		return err
	}
	subs, err := json.Marshal(nonNil(q.Submitters))
	if err != nil {
		return fmt.Errorf("unable to encode submitters: %w", err)
	}
	nodes, err := json.Marshal(nonNil(q.Nodes))
	if err != nil {
		return fmt.Errorf("unable to encode nodes: %w", err)
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		if err := checkUsers(ctx, tx, "submitters", q.Submitters, RoleClient, "a client"); err != nil {
			return err
		}
		if err := checkUsers(ctx, tx, "nodes", q.Nodes, RoleProcessor, "a processor"); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `
			INSERT INTO queues (name, private, submitters, nodes, priority, paused, time_create)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING`,
			q.Name, q.Private, string(subs), string(nodes), q.Priority, q.Paused, us(now))
		if err != nil {
			return fmt.Errorf("unable to add queue: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("queue %q: %w", q.Name, ErrExists)
		}
		return nil
	})
}

// checkUsers checks that every user named in list field exists and has
// role (what calls it in errors).
func checkUsers(ctx context.Context, tx *sql.Tx, field string, names []string, role Role, what string) error {
	for _, n := range names {
		var roles Role
		err := tx.QueryRowContext(ctx, `SELECT roles FROM users WHERE name = ?`, n).Scan(&roles)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return &queue.FieldError{Field: field, Problem: fmt.Sprintf("no user named %q", n)}
		case err != nil:
			return fmt.Errorf("unable to read user: %w", err)
		case !roles.Has(role):
			return &queue.FieldError{Field: field, Problem: fmt.Sprintf("user %q is not %s", n, what)}
		}
	}
	return nil
}

// QueueRules reads every queue's definition (no figures): what a dequeue
// plans with and a submission is checked against. It reads the table
// afresh each time, so a pause made by an admin command in another
// process holds from the next dequeue on.
func (s *Store) QueueRules(ctx context.Context) ([]queue.Queue, error) {
	rows, err := queryRows(ctx, s.r, "read queues", scanQueue,
		`SELECT name, private, submitters, nodes, priority, paused, time_create FROM queues ORDER BY name`)
	out := make([]queue.Queue, len(rows))
	for i, r := range rows {
		out[i] = r.Queue
	}
	return out, err
}

// QueueRule reads one queue's definition; ErrNotFound if there is none.
func (s *Store) QueueRule(ctx context.Context, name string) (queue.Queue, error) {
	rows, err := queryRows(ctx, s.r, "read queue", scanQueue,
		`SELECT name, private, submitters, nodes, priority, paused, time_create FROM queues WHERE name = ?`, name)
	if err != nil {
		return queue.Queue{}, err
	}
	if len(rows) == 0 {
		return queue.Queue{}, ErrNotFound
	}
	return rows[0].Queue, nil
}

func scanQueue(rows *sql.Rows) (QueueInfo, error) {
	var q QueueInfo
	var subs, nodes string
	var created int64
	if err := rows.Scan(&q.Name, &q.Private, &subs, &nodes, &q.Priority, &q.Paused, &created); err != nil {
		return q, err
	}
	q.TimeCreate = fromUS(created)
	if err := json.Unmarshal([]byte(subs), &q.Submitters); err != nil {
		return q, fmt.Errorf("queue %q: submitters: %w", q.Name, err)
	}
	if err := json.Unmarshal([]byte(nodes), &q.Nodes); err != nil {
		return q, fmt.Errorf("queue %q: nodes: %w", q.Name, err)
	}
	return q, nil
}

// Queues lists every queue, by name, with its figures.
func (s *Store) Queues(ctx context.Context) ([]QueueInfo, error) {
	qs, err := queryRows(ctx, s.r, "read queues", scanQueue,
		`SELECT name, private, submitters, nodes, priority, paused, time_create FROM queues ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return qs, s.figures(ctx, qs)
}

// Queue is one queue with its figures; ErrNotFound if there is none.
func (s *Store) Queue(ctx context.Context, name string) (QueueInfo, error) {
	qs, err := queryRows(ctx, s.r, "read queue", scanQueue,
		`SELECT name, private, submitters, nodes, priority, paused, time_create FROM queues WHERE name = ?`, name)
	if err != nil {
		return QueueInfo{}, err
	}
	if len(qs) == 0 {
		return QueueInfo{}, ErrNotFound
	}
	return qs[0], s.figures(ctx, qs)
}

// figures fills in the queues' depth and running from queue_counts (kept
// by triggers) and, for a queue with tasks waiting, oldest from its head
// in tasks_queue_wait: a cost per queue, not per task.
func (s *Store) figures(ctx context.Context, qs []QueueInfo) error {
	type count struct {
		queue string
		state int
		n     int64
	}
	counts, err := queryRows(ctx, s.r, "count the queues' tasks", func(rows *sql.Rows) (c count, err error) {
		err = rows.Scan(&c.queue, &c.state, &c.n)
		return c, err
	}, `SELECT queue, state, n FROM queue_counts WHERE n > 0`)
	if err != nil {
		return err
	}
	byName := make(map[string]*QueueInfo, len(qs))
	for i := range qs {
		byName[qs[i].Name] = &qs[i]
	}
	for _, c := range counts {
		q := byName[c.queue]
		switch {
		case q == nil:
		case c.state == stateQueued:
			q.Depth = c.n
		case c.state == stateAssigned:
			q.Running = c.n
		}
	}
	for i := range qs {
		if qs[i].Depth > 0 {
			if err := s.oldest(ctx, &qs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// oldest reads when q's head task last entered the queue.
func (s *Store) oldest(ctx context.Context, q *QueueInfo) error {
	var queued sql.NullInt64
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT time_queued, time_create FROM tasks WHERE queue = ? AND state = ? ORDER BY id LIMIT 1`,
		q.Name, stateQueued).Scan(&queued, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // taken meanwhile
	}
	if err != nil {
		return fmt.Errorf("unable to read the head of queue %q: %w", q.Name, err)
	}
	q.Oldest = fromUS(created)
	if queued.Valid {
		q.Oldest = fromUS(queued.Int64)
	}
	return nil
}

// SetPaused pauses (the queue keeps its tasks and hands none out) or
// resumes a queue; ErrNotFound if there is none.
func (s *Store) SetPaused(ctx context.Context, name string, paused bool) error {
	n, err := s.writeOne(ctx, "pause queue", `UPDATE queues SET paused = ? WHERE name = ?`, paused, name)
	if err == nil && n == 0 {
		return fmt.Errorf("queue %q: %w", name, ErrNotFound)
	}
	return err
}

// RemoveQueue deletes a queue that holds no queued or running task: one
// that does is ErrInUse, saying how many; the default queue is
// ErrDefaultQueue; an unknown one ErrNotFound. Finished tasks keep the
// name of their queue.
func (s *Store) RemoveQueue(ctx context.Context, name string) error {
	if name == spec.DefaultQueue {
		return ErrDefaultQueue
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		var queued, running int64
		if err := tx.QueryRowContext(ctx, `SELECT
				COALESCE((SELECT n FROM queue_counts WHERE queue = ? AND state = ?), 0),
				COALESCE((SELECT n FROM queue_counts WHERE queue = ? AND state = ?), 0)`,
			name, stateQueued, name, stateAssigned).Scan(&queued, &running); err != nil {
			return fmt.Errorf("unable to count tasks of queue %q: %w", name, err)
		}
		if queued+running > 0 {
			return fmt.Errorf("queue %q holds %d queued and %d running tasks: %w", name, queued, running, ErrInUse)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM queues WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("unable to remove queue: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("queue %q: %w", name, ErrNotFound)
		}
		return nil
	})
}
