package store

// This file owns the queue: handing tasks to nodes (Dequeue), leases
// (Heartbeat, ExpireLeases), tasks a node hands back (Release), the admin's
// Unassign, and the counts.
//
// Leases: every assignment carries lease_expire. A node that heartbeats
// (declared in its dequeue, or seen heartbeating) has it pushed to now +
// the lease time at each heartbeat; a node that never does (Kolejka's
// Python foreman) gets, at dequeue, a lease long enough to run the tasks it
// took (the caller's Lease function). When a lease runs out the task goes
// back to the queue, keeping its place (queue order is submission order),
// or, once it has been handed out MaxAttempts times, gets an SE result
// made by the server so its owner is not left waiting forever.
//
// Everything here runs in immediate transactions, so any number of
// concurrent dequeues, heartbeats, results and expiry passes see each
// other's effects whole: a task is handed to one node at a time.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kolejka-go/kolejka/internal/queue"
	"github.com/kolejka-go/kolejka/internal/server/sched"
	"github.com/kolejka-go/kolejka/spec"
)

// A dequeue reads queued task ids in pages: the first small (most
// dequeues take the first tasks they see), each next one four times
// larger, up to maxPage.
const (
	firstPage = 16
	maxPage   = 256
)

// Expiry is the policy for tasks whose lease ran out.
type Expiry struct {
	// MaxAttempts is how many times a task is handed out before a lost
	// lease gives it an SE result (≤ 0: 1).
	MaxAttempts int
	// QueueTimeout, if positive, gives an SE result to a task among the
	// QueueHead oldest queued ones that has waited that long since it last
	// entered the queue (no node could take it). Only ExpireLeases (the
	// background pass) applies it; dequeues stay cheap.
	QueueTimeout time.Duration
	QueueHead    int
}

// ExpiryResult says what an expiry pass changed.
type ExpiryResult struct {
	Requeued []string // task keys back in the queue
	Failed   []string // task keys that got an SE result
	Callback bool     // an outbox row was added
}

// DequeueRequest asks for work for one node.
type DequeueRequest struct {
	Node       int64 // the asking processor
	Tags       []string
	Free       spec.Limits // the request's limits: what the node has free
	Defaults   spec.Limits // for limits a task omits
	Concurency int
	Heartbeat  bool // the node heartbeats: give the short lease
	Window     int  // most queued tasks to look at (≤ 0: 1000)
	Now        time.Time
	// Started is when the node's request began: a task whose lease this
	// node lost after that is not handed to this request (see LostBy).
	// Zero: no such check.
	Started time.Time
	// Lease is how long the node holds the tasks taken, given the limits
	// each runs with and whether the node heartbeats.
	Lease  func(taken []spec.Limits, heartbeat bool) time.Duration
	Expiry Expiry
	// Queues is what the dequeue scans: groups of queue names, highest
	// priority first (queue.PlanFor). Empty: nothing is handed out (the
	// expiry pass still runs).
	Queues queue.Plan
}

// Assignment is a task handed to a node.
type Assignment struct {
	Key         string
	Description []byte      // the stored task
	Limits      spec.Limits // the limits it runs with on this node
	LeaseExpire time.Time
	Attempt     int
	Origin      []byte // what the task was rendered from (tasktype.Origin JSON), nil if posted
}

// DequeueResult is what one dequeue did.
type DequeueResult struct {
	Tasks   []Assignment
	Scanned int // queued tasks looked at
	Expired ExpiryResult
}

// pick is a queued task the picker took, with the limits it runs with.
type pick struct {
	id  int64
	eff spec.Limits
}

// Dequeue runs the expiry pass, then hands the node the oldest queued tasks
// of the queues it asked for that fit it (package sched), higher priority
// queues first (req.Queues), looking at no more than Window of them.
// Tasks outside the window wait until older ones are taken; a task no node
// can take stays queued (and is counted in Stats) unless the background
// expiry pass's QueueTimeout ends it. A dequeue reclaims lapsed leases
// first, so a waiting node gets a dead node's task at once.
//
// One transaction, in steps: reclaim lapsed leases (expire), see what the
// node already holds (nodeOf), walk the queue's head offering each task to
// the node's picker (pickQueued, offer), and lease what it took (lease).
// Once committed, the taken tasks leave the candidate cache.
func (s *Store) Dequeue(ctx context.Context, req DequeueRequest) (DequeueResult, error) {
	var out DequeueResult
	var picks []pick
	err := s.write(ctx, func(tx *sql.Tx) error {
		out, picks = DequeueResult{}, nil
		var err error
		if out.Expired, err = expire(ctx, tx, req.Now, req.Expiry.leasesOnly()); err != nil {
			return err
		}
		node, err := nodeOf(ctx, tx, &req)
		if err != nil {
			return err
		}
		if picks, out.Scanned, err = s.pickQueued(ctx, tx, &req, sched.NewPicker(node)); err != nil {
			return err
		}
		out.Tasks, err = lease(ctx, tx, &req, picks)
		return err
	})
	if err == nil {
		ids := make([]int64, 0, len(picks))
		for _, p := range picks {
			ids = append(ids, p.id)
		}
		s.forget(ids...)
	}
	return out, err
}

// leasesOnly is the expiry a dequeue applies: lapsed leases only; the
// queue timeout is the background pass's, so that dequeues stay cheap.
func (p Expiry) leasesOnly() Expiry {
	p.QueueTimeout = 0
	return p
}

// window is how many queued tasks the dequeue may look at.
func (req *DequeueRequest) window() int {
	if req.Window <= 0 {
		return 1000
	}
	return req.Window
}

// nodeOf is the asking node as the scheduler sees it: what it asks for,
// and whether it already holds tasks, and an exclusive one (answered from
// the tasks_assignee index alone).
func nodeOf(ctx context.Context, tx *sql.Tx, req *DequeueRequest) (sched.Node, error) {
	n := sched.Node{Tags: req.Tags, Free: req.Free, Defaults: req.Defaults, Concurency: req.Concurency}
	if err := tx.QueryRowContext(ctx, `SELECT
			EXISTS (SELECT 1 FROM tasks WHERE assignee_id = ? AND state = ?),
			EXISTS (SELECT 1 FROM tasks WHERE assignee_id = ? AND state = ? AND exclusive = 1)`,
		req.Node, stateAssigned, req.Node, stateAssigned).Scan(&n.Busy, &n.HoldsExclusive); err != nil {
		return n, fmt.Errorf("unable to read node's tasks: %w", err)
	}
	return n, nil
}

// pickQueued offers the picker the queued tasks of the request's plan
// until it is done or the window is looked at: the plan's groups in turn
// (highest priority first), and inside a group its queues' tasks merged
// in queue order (oldest first, whichever queue holds them). It returns
// what the picker took and how many tasks it saw; the window bounds the
// whole dequeue, not each group.
func (s *Store) pickQueued(ctx context.Context, tx *sql.Tx, req *DequeueRequest, picker *sched.Picker) (picks []pick, scanned int, err error) {
	window := req.window()
	for _, group := range req.Queues {
		if picker.Done() || scanned >= window {
			break
		}
		if picks, scanned, err = s.pickGroup(ctx, tx, req, picker, group, picks, scanned); err != nil {
			return nil, scanned, err
		}
	}
	return picks, scanned, nil
}

// pickGroup is pickQueued over one group of queues of equal priority: a
// k-way merge of one cursor per queue, each reading its queue's ids from
// tasks_queue_wait a page at a time (see firstPage), so that no query ever
// sorts more than one page. A group of one queue is a plain walk of its
// pages, as fast as a server without named queues.
func (s *Store) pickGroup(ctx context.Context, tx *sql.Tx, req *DequeueRequest, picker *sched.Picker,
	group []string, picks []pick, scanned int) ([]pick, int, error) {
	window := req.window()
	// Each cursor pages as a single queue does, except that no page is
	// larger than its share of what is left of the window: an index
	// search costs about as much as 50 ids read (~20 µs), so the pages
	// stay large and the searches few.
	first := max(firstPage, 4*req.Concurency)
	cursors := make([]*cursor, len(group))
	for i, q := range group {
		cursors[i] = &cursor{queue: q, page: first}
	}
	for !picker.Done() && scanned < window {
		active := 0
		for _, c := range cursors {
			if len(c.ids) > 0 || !c.end {
				active++
			}
		}
		if active == 0 {
			break // every queue of the group is read to its end
		}
		share := (window - scanned + active - 1) / active
		if err := fill(ctx, tx, cursors, share); err != nil {
			return nil, scanned, err
		}
		// The oldest head among the queues; a few queues per node, so a
		// linear look beats a heap.
		var next *cursor
		for _, c := range cursors {
			if len(c.ids) > 0 && (next == nil || c.ids[0] < next.ids[0]) {
				next = c
			}
		}
		if next == nil {
			break
		}
		id := next.ids[0]
		next.ids = next.ids[1:]
		scanned++
		eff, ok, err := s.offer(ctx, tx, req, picker, id)
		if err != nil {
			return nil, scanned, err
		}
		if ok {
			picks = append(picks, pick{id: id, eff: eff})
		}
	}
	return picks, scanned, nil
}

// cursor walks one queue's queued task ids in queue order, a page at a
// time: the first page small (most dequeues take the first tasks they
// see), each next one four times larger, up to maxPage.
type cursor struct {
	queue string
	last  int64   // the last id read
	ids   []int64 // read, not yet offered
	page  int     // the next page's size
	end   bool    // the queue has no more ids after last
}

// next is the size of the cursor's next page, at most left; 0 when it
// needs none (it has ids left to offer, or its queue has no more).
func (c *cursor) next(left int) int {
	if len(c.ids) > 0 || c.end || left <= 0 {
		return 0
	}
	return min(c.page, maxPage, left)
}

// got records the cursor's page of ids, read for a page of n.
func (c *cursor) got(ids []int64, n int) {
	c.page *= 4
	c.ids = ids
	if len(ids) > 0 {
		c.last = ids[len(ids)-1]
	}
	c.end = len(ids) < n
}

// fill reads the next page, of at most left ids, of each cursor that has
// offered all it read: one index search per queue (a UNION ALL of them in
// one statement measured slower than the searches one by one).
func fill(ctx context.Context, tx *sql.Tx, cursors []*cursor, left int) error {
	for _, c := range cursors {
		n := c.next(left)
		if n == 0 {
			continue
		}
		ids, err := queuedIDs(ctx, tx, c.queue, c.last, n)
		if err != nil {
			return err
		}
		c.got(ids, n)
	}
	return nil
}

// offer shows queued task id to the picker: ok says it took the task, to
// run with limits eff.
func (s *Store) offer(ctx context.Context, tx *sql.Tx, req *DequeueRequest, picker *sched.Picker, id int64) (eff spec.Limits, ok bool, err error) {
	c, ok, err := s.candidate(ctx, tx, id)
	if err != nil || !ok {
		return spec.Limits{}, false, err
	}
	if req.lostSinceStart(c) {
		return spec.Limits{}, false, nil
	}
	eff, ok = picker.Offer(c)
	return eff, ok, nil
}

// lostSinceStart reports whether the asking node lost the task's lease
// after its request began: the request is likely a long poll left open
// across a network cut, and the node would lose the task again. A fresh
// request of the node may take it.
func (req *DequeueRequest) lostSinceStart(c sched.Candidate) bool {
	return c.LostBy == req.Node && !req.Started.IsZero() && us(req.Started) < c.TimeLost
}

// lease assigns the picked tasks to the node, under one lease as long as
// req.Lease gives for the limits they run with, and records each hand-out
// in the assignment history.
func lease(ctx context.Context, tx *sql.Tx, req *DequeueRequest, picks []pick) ([]Assignment, error) {
	if len(picks) == 0 {
		return nil, nil
	}
	effs := make([]spec.Limits, len(picks))
	for i, p := range picks {
		effs[i] = p.eff
	}
	expireAt := req.Now.Add(req.Lease(effs, req.Heartbeat))
	tasks := make([]Assignment, 0, len(picks))
	for _, p := range picks {
		a, err := assign(ctx, tx, req, p, expireAt)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, a)
	}
	return tasks, nil
}

// assign hands one queued task to the node until expireAt.
func assign(ctx context.Context, tx *sql.Tx, req *DequeueRequest, p pick, expireAt time.Time) (Assignment, error) {
	lj, err := p.eff.MarshalJSON()
	if err != nil {
		return Assignment{}, fmt.Errorf("unable to encode limits: %w", err)
	}
	a := Assignment{Limits: p.eff, LeaseExpire: expireAt.UTC()}
	err = tx.QueryRowContext(ctx, `
		UPDATE tasks SET state = ?, assignee_id = ?, time_assign = ?, lease_expire = ?, heartbeat = ?,
			attempts = attempts + 1, assigned_limits = ?
		WHERE id = ? AND state = ? RETURNING key, description, attempts, origin`,
		stateAssigned, req.Node, us(req.Now), us(expireAt), req.Heartbeat, lj, p.id, stateQueued).
		Scan(&a.Key, &a.Description, &a.Attempt, &a.Origin)
	if err != nil {
		return Assignment{}, fmt.Errorf("unable to assign task: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO task_nodes (task_id, attempt, user_id, time_assign) VALUES (?, ?, ?, ?)`,
		p.id, a.Attempt, req.Node, us(req.Now)); err != nil {
		return Assignment{}, fmt.Errorf("unable to record assignment: %w", err)
	}
	return a, nil
}

// maxCands bounds the candidate cache (a few hundred bytes each); when
// full it is emptied and refills from the queue's head.
const maxCands = 100_000

// queuedIDs reads up to n queued task ids of queue q after id last, in
// queue order, from the index tasks_queue_wait alone.
func queuedIDs(ctx context.Context, tx *sql.Tx, q string, last int64, n int) ([]int64, error) {
	return queryColumn[int64](ctx, tx, "read queue", `SELECT id FROM tasks WHERE queue = ? AND state = ? AND id > ? ORDER BY id LIMIT ?`,
		q, stateQueued, last, n)
}

// candidate is how the scheduler sees queued task id: from the cache, or
// read and cached. ok is false for a task whose stored limits cannot be
// read (it cannot happen: this server wrote them); it is skipped, so it
// never blocks the queue.
func (s *Store) candidate(ctx context.Context, tx *sql.Tx, id int64) (c sched.Candidate, ok bool, err error) {
	s.candMu.Lock()
	c, hit := s.cands[id]
	s.candMu.Unlock()
	if hit {
		return c, true, nil
	}
	var requires string
	var limits []byte
	var lostBy, timeLost sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT requires, exclusive, limits, lost_by, time_lost FROM tasks WHERE id = ?`, id).
		Scan(&requires, &c.Exclusive, &limits, &lostBy, &timeLost); err != nil {
		return c, false, fmt.Errorf("unable to read queued task: %w", err)
	}
	c.LostBy, c.TimeLost = lostBy.Int64, timeLost.Int64
	// Not an error: one row that cannot be read must not fail every
	// node's dequeue (see above).
	if err := json.Unmarshal([]byte(requires), &c.Requires); err != nil {
		return c, false, nil //nolint:nilerr // skipped
	}
	if c.Limits, err = spec.ParseLimits(limits, ""); err != nil {
		return c, false, nil //nolint:nilerr // skipped
	}
	c.Shape = fmt.Sprintf("%t|%s|%s", c.Exclusive, requires, limits)
	s.candMu.Lock()
	if len(s.cands) >= maxCands {
		clear(s.cands)
	}
	s.cands[id] = c
	s.candMu.Unlock()
	return c, true, nil
}

// forget drops assigned tasks from the candidate cache.
func (s *Store) forget(ids ...int64) {
	s.candMu.Lock()
	defer s.candMu.Unlock()
	for _, id := range ids {
		delete(s.cands, id)
	}
}

// HeartbeatResult says which tasks a node still holds.
type HeartbeatResult struct {
	Held []string // leases extended
	Lost []string // asked for but no longer the node's (requeued, reassigned, resolved, deleted, unknown)
}

// Heartbeat extends to at least until the leases of the node's assigned
// tasks named in keys (all of them if keys is nil), and marks them as
// heartbeating. A lease already past its end but not yet reclaimed by an
// expiry pass is extended too: the node is evidently alive.
func (s *Store) Heartbeat(ctx context.Context, node int64, keys []string, until time.Time) (HeartbeatResult, error) {
	var out HeartbeatResult
	err := s.write(ctx, func(tx *sql.Tx) error {
		out = HeartbeatResult{Held: []string{}, Lost: []string{}}
		if keys == nil {
			held, err := queryColumn[string](ctx, tx, "extend leases", `
				UPDATE tasks SET lease_expire = CASE WHEN lease_expire > ? THEN lease_expire ELSE ? END, heartbeat = 1
				WHERE assignee_id = ? AND state = ? RETURNING key`, us(until), us(until), node, stateAssigned)
			out.Held = append(out.Held, held...)
			return err
		}
		for _, k := range keys {
			res, err := tx.ExecContext(ctx, `
				UPDATE tasks SET lease_expire = CASE WHEN lease_expire > ? THEN lease_expire ELSE ? END, heartbeat = 1
				WHERE key = ? AND assignee_id = ? AND state = ?`, us(until), us(until), k, node, stateAssigned)
			if err != nil {
				return fmt.Errorf("unable to extend lease: %w", err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				out.Held = append(out.Held, k)
			} else {
				out.Lost = append(out.Lost, k)
			}
		}
		return nil
	})
	return out, err
}

// ReleaseResult says which tasks a node handed back.
type ReleaseResult struct {
	Released []string // back in the queue, the hand-out undone
	Lost     []string // asked for but not the node's (requeued, reassigned, resolved, deleted, unknown)
}

// Release hands the node's assigned tasks named in keys back to the queue
// at once, as if the hand-out had not happened: the attempt it counted is
// taken back (attempts - 1, and its row in the assignment history goes, so
// the node can no longer post a late result for it unless it held the task
// in an earlier attempt too), and the task keeps its place in the queue
// (queue order is submission order). A node uses it when it is stopped
// before finishing what it took; a node that dies instead is handled by its
// leases, which do count the attempt.
//
// keys nil means every task the node holds.
func (s *Store) Release(ctx context.Context, node int64, keys []string, now time.Time) (ReleaseResult, error) {
	var out ReleaseResult
	err := s.write(ctx, func(tx *sql.Tx) error {
		out = ReleaseResult{Released: []string{}, Lost: []string{}}
		if keys == nil {
			var err error
			if keys, err = heldKeys(ctx, tx, node); err != nil {
				return err
			}
		}
		for _, k := range keys {
			var id int64
			var attempt int
			err := tx.QueryRowContext(ctx, `
				UPDATE tasks SET state = ?, assignee_id = NULL, time_assign = NULL, lease_expire = NULL, assigned_limits = NULL,
					attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, time_queued = ?
				WHERE key = ? AND assignee_id = ? AND state = ? RETURNING id, attempts + 1`,
				stateQueued, us(now), k, node, stateAssigned).Scan(&id, &attempt)
			if errors.Is(err, sql.ErrNoRows) {
				out.Lost = append(out.Lost, k)
				continue
			}
			if err != nil {
				return fmt.Errorf("unable to release task: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM task_nodes WHERE task_id = ? AND attempt = ? AND user_id = ?`,
				id, attempt, node); err != nil {
				return fmt.Errorf("unable to undo assignment: %w", err)
			}
			out.Released = append(out.Released, k)
		}
		return nil
	})
	return out, err
}

// heldKeys lists the tasks assigned to node.
func heldKeys(ctx context.Context, tx *sql.Tx, node int64) ([]string, error) {
	return queryColumn[string](ctx, tx, "list the node's tasks", `SELECT key FROM tasks WHERE assignee_id = ? AND state = ? ORDER BY id`,
		node, stateAssigned)
}

// ExpireLeases reclaims the tasks whose lease ended before now (see the
// file's comment) and applies the queue timeout.
func (s *Store) ExpireLeases(ctx context.Context, now time.Time, p Expiry) (ExpiryResult, error) {
	var out ExpiryResult
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = expire(ctx, tx, now, p)
		return err
	})
	return out, err
}

// expireBatch bounds the work of one expiry pass inside a transaction;
// whatever is left is taken by the next pass.
const expireBatch = 500

// expire reclaims lapsed leases and, with a QueueTimeout, ends the queued
// tasks that waited too long (see the file's comment), in tx.
func expire(ctx context.Context, tx *sql.Tx, now time.Time, p Expiry) (ExpiryResult, error) {
	var out ExpiryResult
	if err := reclaimLeases(ctx, tx, now, max(p.MaxAttempts, 1), &out); err != nil {
		return out, err
	}
	if p.QueueTimeout > 0 {
		if err := timeOutQueued(ctx, tx, now, p, &out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// reclaimLeases takes back up to expireBatch tasks whose lease ended
// before now: to the queue, keeping their place, or, once handed out
// maxAttempts times, to an SE result.
func reclaimLeases(ctx context.Context, tx *sql.Tx, now time.Time, maxAttempts int, out *ExpiryResult) error {
	type lapsed struct {
		id       int64
		key      string
		attempts int
	}
	list, err := queryRows(ctx, tx, "find lapsed leases", func(rows *sql.Rows) (l lapsed, err error) {
		err = rows.Scan(&l.id, &l.key, &l.attempts)
		return l, err
	}, `SELECT id, key, attempts FROM tasks WHERE state = ? AND lease_expire < ? ORDER BY lease_expire LIMIT ?`,
		stateAssigned, us(now), expireBatch)
	if err != nil {
		return err
	}
	for _, l := range list {
		if l.attempts >= maxAttempts {
			cb, err := serverFailure(ctx, tx, l.id, now,
				fmt.Sprintf("the node holding the task stopped answering %d times", l.attempts))
			if err != nil {
				return err
			}
			out.Failed = append(out.Failed, l.key)
			out.Callback = out.Callback || cb
			continue
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE tasks SET state = ?, lost_by = assignee_id, time_lost = ?, assignee_id = NULL, time_assign = NULL,
				lease_expire = NULL, assigned_limits = NULL, time_queued = ?
			WHERE id = ?`, stateQueued, us(now), us(now), l.id); err != nil {
			return fmt.Errorf("unable to requeue task: %w", err)
		}
		out.Requeued = append(out.Requeued, l.key)
	}
	return nil
}

// timeOutQueued gives an SE result to the tasks among the QueueHead oldest
// queued ones that entered the queue more than QueueTimeout before now.
// The head of the queue is what blocks dequeues; it is bounded, so this
// never reads the whole queue.
func timeOutQueued(ctx context.Context, tx *sql.Tx, now time.Time, p Expiry, out *ExpiryResult) error {
	type waiting struct {
		id     int64
		key    string
		queued sql.NullInt64
	}
	head, err := queryRows(ctx, tx, "find timed-out tasks", func(rows *sql.Rows) (w waiting, err error) {
		err = rows.Scan(&w.id, &w.key, &w.queued)
		return w, err
	}, `SELECT id, key, time_queued FROM tasks WHERE state = ? ORDER BY id LIMIT ?`, stateQueued, max(p.QueueHead, 1))
	if err != nil {
		return err
	}
	cutoff := us(now.Add(-p.QueueTimeout))
	for _, w := range head {
		if !w.queued.Valid || w.queued.Int64 >= cutoff {
			continue
		}
		cb, err := serverFailure(ctx, tx, w.id, now, "no node took the task within the queue timeout")
		if err != nil {
			return err
		}
		out.Failed = append(out.Failed, w.key)
		out.Callback = out.Callback || cb
	}
	return nil
}

// serverFailure gives task id an SE result made by the server (status SE,
// no exit code, no files) and queues its callback. why is logged by the
// caller; the result format has no field for it.
func serverFailure(ctx context.Context, tx *sql.Tx, id int64, now time.Time, why string) (callback bool, err error) {
	var key, url string
	var desc, limits []byte
	if err := tx.QueryRowContext(ctx, `SELECT key, description, limits, callback_url FROM tasks WHERE id = ?`, id).
		Scan(&key, &desc, &limits, &url); err != nil {
		return false, fmt.Errorf("unable to read task: %w", err)
	}
	l, _ := spec.ParseLimits(limits, "")
	r := &spec.Result{ID: key, Tags: []string{}, Limits: l, Status: spec.StatusSE, Files: map[string]spec.File{}}
	res, err := r.Encode()
	if err != nil {
		return false, fmt.Errorf("unable to encode SE result: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO results (task_id, user_id, description, fingerprint, time_create) VALUES (?, NULL, ?, ?, ?)`,
		id, res, "server:"+why, us(now)); err != nil {
		return false, fmt.Errorf("unable to record SE result: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `
		UPDATE tasks SET state = ?, assignee_id = NULL, lease_expire = NULL, time_finish = ?, status = ? WHERE id = ?`, stateDone, us(now), string(spec.StatusSE), id); err != nil {
		return false, fmt.Errorf("unable to resolve task: %w", err)
	}
	if err := taskEnded(ctx, tx, id, string(spec.StatusSE), now); err != nil {
		return false, err
	}
	if url == "" {
		return false, nil
	}
	if err := queueCallback(ctx, tx, key, url, desc, res, now); err != nil {
		return false, err
	}
	return true, nil
}

// Unassign returns to the queue the unresolved tasks assigned before
// cutoff (the admin's unassign AGE), whatever their lease says.
func (s *Store) Unassign(ctx context.Context, cutoff, now time.Time) ([]string, error) {
	var keys []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		keys, err = queryColumn[string](ctx, tx, "unassign tasks", `
			UPDATE tasks SET state = ?, assignee_id = NULL, time_assign = NULL, lease_expire = NULL, assigned_limits = NULL,
				time_queued = ?
			WHERE state = ? AND time_assign < ? RETURNING key`, stateQueued, us(now), stateAssigned, us(cutoff))
		return err
	})
	return keys, err
}

// Stats counts tasks as Kolejka's /queue/stats/ does.
type Stats struct {
	Total      int64
	Resolved   int64
	Unresolved int64
	Unassigned int64
	Assigned   int64
	Cancelled  int64
	Assignees  map[string]int64 // node name → assigned, unresolved tasks
}

// Stats counts tasks by state.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	st := Stats{Assignees: map[string]int64{}}
	rows, err := s.r.QueryContext(ctx, `SELECT state, n FROM task_counts`)
	if err != nil {
		return st, fmt.Errorf("unable to count tasks: %w", err)
	}
	for rows.Next() {
		var state int
		var n int64
		if err := rows.Scan(&state, &n); err != nil {
			rows.Close()
			return st, fmt.Errorf("unable to count tasks: %w", err)
		}
		st.Total += n
		switch state {
		case stateQueued:
			st.Unassigned = n
		case stateAssigned:
			st.Assigned = n
		case stateDone:
			st.Resolved = n
		case stateCancelled:
			st.Cancelled = n
		}
	}
	rows.Close()
	// Work left: a cancelled task will never be resolved, nor run.
	st.Unresolved = st.Unassigned + st.Assigned
	rows, err = s.r.QueryContext(ctx, `
		SELECT u.name, COUNT(*) FROM tasks t JOIN users u ON u.id = t.assignee_id WHERE t.state = ? GROUP BY u.name`, stateAssigned)
	if err != nil {
		return st, fmt.Errorf("unable to count assignments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return st, fmt.Errorf("unable to count assignments: %w", err)
		}
		st.Assignees[name] = n
	}
	return st, rows.Err()
}

// NextLease is the earliest lease end of an assigned task, if any.
func (s *Store) NextLease(ctx context.Context) (time.Time, bool, error) {
	var v sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT MIN(lease_expire) FROM tasks WHERE state = ?`, stateAssigned).Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, fmt.Errorf("unable to read leases: %w", err)
	}
	return fromNullUS(v), v.Valid, nil
}
