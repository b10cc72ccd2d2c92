package store

// This file owns the nodes table (migration step 12): what the server
// last heard from each processor, and whether it is drained. The server
// decides how often to write (it throttles last-seen writes); the store
// writes what it is told.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

// NodeNote is a contact from a node: a dequeue (Dequeue true: the state
// below replaces the stored one) or a heartbeat (the time only).
type NodeNote struct {
	Node    int64
	Seen    time.Time
	Dequeue bool
	// Free, Capacity and Defaults are JSON limits as spec.Limits encodes
	// them (nil: {}); Capacity is what our foreman declares, {} from
	// Kolejka's.
	Free, Capacity, Defaults []byte
	Tags, Queues             []string
	Concurency               int
}

// NoteNode records a node's contact. The last seen time never goes back:
// two servers' or two requests' notes may arrive out of order.
func (s *Store) NoteNode(ctx context.Context, n NodeNote) error {
	const later = `CASE WHEN nodes.last_seen IS NULL OR nodes.last_seen < excluded.last_seen
		THEN excluded.last_seen ELSE nodes.last_seen END`
	if !n.Dequeue {
		_, err := s.writeOne(ctx, "note node", `
			INSERT INTO nodes (user_id, last_seen, time_create) VALUES (?, ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET last_seen = `+later,
			n.Node, us(n.Seen), us(n.Seen))
		return err
	}
	tags, err := json.Marshal(nonNil(n.Tags))
	if err != nil {
		return fmt.Errorf("unable to encode tags: %w", err)
	}
	queues, err := json.Marshal(nonNil(n.Queues))
	if err != nil {
		return fmt.Errorf("unable to encode queues: %w", err)
	}
	_, err = s.writeOne(ctx, "note node", `
		INSERT INTO nodes (user_id, last_seen, last_dequeue, free, capacity, defaults, tags, queues, concurency, time_create)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET last_seen = `+later+`,
			last_dequeue = excluded.last_dequeue, free = excluded.free, capacity = excluded.capacity,
			defaults = excluded.defaults, tags = excluded.tags, queues = excluded.queues,
			concurency = excluded.concurency`,
		n.Node, us(n.Seen), us(n.Seen), limitsOrEmpty(n.Free), limitsOrEmpty(n.Capacity), limitsOrEmpty(n.Defaults),
		string(tags), string(queues), n.Concurency, us(n.Seen))
	return err
}

func limitsOrEmpty(l []byte) []byte {
	if len(l) == 0 {
		return []byte("{}")
	}
	return l
}

// NodeInfo is a node as the server last heard from it.
type NodeInfo struct {
	ID   int64
	Name string
	// LastSeen is the last contact written (zero: never); LastDequeue the
	// last dequeue's, whose state the fields below are (zero: none yet).
	LastSeen, LastDequeue    time.Time
	Free, Capacity, Defaults spec.Limits
	Tags, Queues             []string
	Concurency               int
	Drained                  bool
	// Running are the keys of the tasks assigned to the node now, in the
	// order they were handed out.
	Running []string
}

// ErrNotProcessor is a node name that is a user but not a processor.
var ErrNotProcessor = errors.New("not a processor")

const nodeColumns = `u.id, u.name, n.last_seen, n.last_dequeue, n.free, n.capacity, n.defaults, n.tags, n.queues, n.concurency, n.drained`

// Nodes lists the nodes the server has heard from (or drained), by name,
// each with its running tasks.
func (s *Store) Nodes(ctx context.Context) ([]NodeInfo, error) {
	nodes, err := queryRows(ctx, s.r, "read nodes", scanNode,
		`SELECT `+nodeColumns+` FROM nodes n JOIN users u ON u.id = n.user_id ORDER BY u.name`)
	if err != nil {
		return nil, err
	}
	for i := range nodes {
		if nodes[i].Running, err = s.running(ctx, nodes[i].ID); err != nil {
			return nil, err
		}
	}
	return nodes, nil
}

// Node reads one node by its user name: ErrNotFound when no such user
// exists, ErrNotProcessor when it is not a processor. A processor the
// server never heard from is a NodeInfo with zero times.
func (s *Store) Node(ctx context.Context, name string) (NodeInfo, error) {
	u, err := s.processor(ctx, s.r, name)
	if err != nil {
		return NodeInfo{}, err
	}
	nodes, err := queryRows(ctx, s.r, "read node", scanNode,
		`SELECT `+nodeColumns+` FROM nodes n JOIN users u ON u.id = n.user_id WHERE n.user_id = ?`, u.ID)
	if err != nil {
		return NodeInfo{}, err
	}
	n := NodeInfo{ID: u.ID, Name: u.Name, Tags: []string{}, Queues: []string{}}
	if len(nodes) == 1 {
		n = nodes[0]
	}
	if n.Running, err = s.running(ctx, n.ID); err != nil {
		return NodeInfo{}, err
	}
	return n, nil
}

// processor finds the processor named name.
func (s *Store) processor(ctx context.Context, q *sql.DB, name string) (User, error) {
	var u User
	var roles int
	err := q.QueryRowContext(ctx, `SELECT id, name, roles FROM users WHERE name = ?`, name).Scan(&u.ID, &u.Name, &roles)
	if err != nil {
		return User{}, rowErr(err, "read user")
	}
	u.Roles = Role(roles)
	if !u.Roles.Has(RoleProcessor) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNotProcessor)
	}
	return u, nil
}

// running are the keys of the node's assigned tasks (index
// tasks_assignee), in hand-out order.
func (s *Store) running(ctx context.Context, node int64) ([]string, error) {
	keys, err := queryColumn[string](ctx, s.r, "read a node's tasks",
		`SELECT key FROM tasks WHERE assignee_id = ? AND state = ? ORDER BY time_assign, id`, node, stateAssigned)
	return nonNil(keys), err
}

func scanNode(rows *sql.Rows) (NodeInfo, error) {
	var n NodeInfo
	var seen, dequeued sql.NullInt64
	var free, capacity, defaults []byte
	var tags, queues string
	if err := rows.Scan(&n.ID, &n.Name, &seen, &dequeued, &free, &capacity, &defaults, &tags, &queues, &n.Concurency, &n.Drained); err != nil {
		return n, err
	}
	n.LastSeen, n.LastDequeue = fromNullUS(seen), fromNullUS(dequeued)
	var err error
	for _, l := range []struct {
		to   *spec.Limits
		raw  []byte
		name string
	}{{&n.Free, free, "free"}, {&n.Capacity, capacity, "capacity"}, {&n.Defaults, defaults, "defaults"}} {
		if *l.to, err = spec.ParseLimits(l.raw, "node "+n.Name+" "+l.name); err != nil {
			return n, err
		}
	}
	if err := json.Unmarshal([]byte(tags), &n.Tags); err != nil {
		return n, fmt.Errorf("node %s tags: %w", n.Name, err)
	}
	if err := json.Unmarshal([]byte(queues), &n.Queues); err != nil {
		return n, fmt.Errorf("node %s queues: %w", n.Name, err)
	}
	n.Tags, n.Queues = nonNil(n.Tags), nonNil(n.Queues)
	return n, nil
}

// SetNodeDrained drains (no new task is handed to it; its running tasks
// go on) or undrains the processor named name, returning its id:
// ErrNotFound for no such user, ErrNotProcessor for a user who is not a
// processor. A node not heard from yet gets its row now, never seen.
func (s *Store) SetNodeDrained(ctx context.Context, name string, drained bool, now time.Time) (int64, error) {
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var roles int
		err := tx.QueryRowContext(ctx, `SELECT id, roles FROM users WHERE name = ?`, name).Scan(&id, &roles)
		if err != nil {
			return rowErr(err, "read user")
		}
		if !Role(roles).Has(RoleProcessor) {
			return fmt.Errorf("user %q: %w", name, ErrNotProcessor)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO nodes (user_id, drained, time_create) VALUES (?, ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET drained = excluded.drained`, id, drained, us(now)); err != nil {
			return fmt.Errorf("unable to drain node: %w", err)
		}
		return nil
	})
	return id, err
}

// NodeDrained says whether the node is drained (a node with no row is
// not).
func (s *Store) NodeDrained(ctx context.Context, node int64) (bool, error) {
	var drained bool
	err := s.r.QueryRowContext(ctx, `SELECT drained FROM nodes WHERE user_id = ?`, node).Scan(&drained)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("unable to read node: %w", err)
	}
	return drained, nil
}
