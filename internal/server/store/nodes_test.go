package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/spec"
)

// A node's dequeue replaces its stored state, a heartbeat moves only its
// last seen time, which never goes back; drain is kept per node and
// listed; its running tasks are its assigned ones.
func TestNodeTable(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite3"))
	defer s.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	owner, _ := s.CreateUser(ctx, "alice", "h", RoleClient, t0)
	a, _ := s.CreateUser(ctx, "a", "h", RoleProcessor, t0)
	s.CreateUser(ctx, "b", "h", RoleProcessor, t0)

	if nodes, err := s.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("nodes of a new database: %+v %v", nodes, err)
	}
	if err := s.NoteNode(ctx, NodeNote{Node: a.ID, Seen: t0, Dequeue: true, Free: []byte(`{"cpus":2,"memory":"1073741824b"}`),
		Capacity: []byte(`{"cpus":4}`), Tags: []string{"gpu"}, Queues: []string{"judge"}, Concurency: 3}); err != nil {
		t.Fatal(err)
	}
	two, four, gib := int64(2), int64(4), int64(1<<30)
	want := NodeInfo{ID: a.ID, Name: "a", LastSeen: t0, LastDequeue: t0, Free: spec.Limits{CPUs: &two, Memory: &gib},
		Capacity: spec.Limits{CPUs: &four}, Tags: []string{"gpu"}, Queues: []string{"judge"}, Concurency: 3, Running: []string{}}
	if nodes, err := s.Nodes(ctx); err != nil || len(nodes) != 1 || !reflect.DeepEqual(nodes[0], want) {
		t.Fatalf("after a dequeue: %+v %v; want %+v", nodes, err, want)
	}

	// A heartbeat moves last seen only; an older note does not move it back.
	t1 := t0.Add(10 * time.Second)
	if err := s.NoteNode(ctx, NodeNote{Node: a.ID, Seen: t1}); err != nil {
		t.Fatal(err)
	}
	if err := s.NoteNode(ctx, NodeNote{Node: a.ID, Seen: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	want.LastSeen = t1
	if got, err := s.Node(ctx, "a"); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("after a heartbeat: %+v %v; want %+v", got, err, want)
	}
	// A Kolejka dequeue (no capacity, no queues) replaces the state.
	t2 := t1.Add(time.Second)
	if err := s.NoteNode(ctx, NodeNote{Node: a.ID, Seen: t2, Dequeue: true, Concurency: 1}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Node(ctx, "a")
	if !got.LastDequeue.Equal(t2) || !got.Capacity.IsZero() || !got.Free.IsZero() || len(got.Tags) != 0 || len(got.Queues) != 0 || got.Concurency != 1 {
		t.Errorf("after Kolejka's dequeue: %+v", got)
	}

	// Running tasks: the node's assigned ones, in hand-out order.
	for _, k := range []string{"k1", "k2"} {
		if _, err := s.InsertTask(ctx, NewTask{Key: k, Owner: owner.ID, Description: []byte(`{}`), Limits: []byte(`{}`), Now: t0}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Dequeue(ctx, DequeueRequest{Node: a.ID, Concurency: 1, Now: t2,
			Lease: func([]spec.Limits, bool) time.Duration { return time.Hour }, Expiry: Expiry{MaxAttempts: 3}, Queues: defaultPlan}); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := s.Node(ctx, "a"); !reflect.DeepEqual(got.Running, []string{"k1", "k2"}) {
		t.Errorf("running tasks %v, want [k1 k2]", got.Running)
	}

	// Drain: b, never seen, gets its row, listed never seen.
	if drained, err := s.NodeDrained(ctx, a.ID); err != nil || drained {
		t.Errorf("a new node is drained: %v %v", drained, err)
	}
	if _, err := s.SetNodeDrained(ctx, "b", true, t2); err != nil {
		t.Fatal(err)
	}
	if id, err := s.SetNodeDrained(ctx, "a", true, t2); err != nil || id != a.ID {
		t.Fatalf("drain a: %d %v", id, err)
	}
	nodes, _ := s.Nodes(ctx)
	if len(nodes) != 2 || nodes[0].Name != "a" || !nodes[0].Drained || nodes[1].Name != "b" || !nodes[1].Drained || !nodes[1].LastSeen.IsZero() {
		t.Errorf("after drains: %+v", nodes)
	}
	if drained, _ := s.NodeDrained(ctx, a.ID); !drained {
		t.Error("a is not drained")
	}
	// A later dequeue note keeps the drain.
	s.NoteNode(ctx, NodeNote{Node: a.ID, Seen: t2.Add(time.Second), Dequeue: true})
	if drained, _ := s.NodeDrained(ctx, a.ID); !drained {
		t.Error("a dequeue note undrained a")
	}
	if _, err := s.SetNodeDrained(ctx, "a", false, t2); err != nil {
		t.Fatal(err)
	}
	if drained, _ := s.NodeDrained(ctx, a.ID); drained {
		t.Error("a is still drained")
	}

	// Names that are not nodes.
	if _, err := s.SetNodeDrained(ctx, "nobody", true, t2); !errors.Is(err, ErrNotFound) {
		t.Errorf("drain an unknown user: %v", err)
	}
	if _, err := s.SetNodeDrained(ctx, "alice", true, t2); !errors.Is(err, ErrNotProcessor) {
		t.Errorf("drain a client: %v", err)
	}
	if _, err := s.Node(ctx, "alice"); !errors.Is(err, ErrNotProcessor) {
		t.Errorf("read a client as a node: %v", err)
	}
	if _, err := s.Node(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("read an unknown node: %v", err)
	}
	if nodes, _ := s.Nodes(ctx); len(nodes) != 2 {
		t.Errorf("refused drains added nodes: %+v", nodes)
	}
}

// undoStep12 takes a database of step 12 back to step 11's tables (the
// caller sets schema_version).
func undoStep12() []string { return append(undoStep13(), `DROP TABLE nodes`) }

// A database of step 11 migrates: its processors have no node row until
// they come.
func TestNodeMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.sqlite3")
	ctx := context.Background()
	s := open(t, path)
	a, _ := s.CreateUser(ctx, "a", "h", RoleProcessor, time.Now())
	for _, q := range append(undoStep12(), `UPDATE schema_version SET version = 11`) {
		if _, err := s.w.Exec(undoSQL(q)); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	if nodes, err := s.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("nodes after migration: %+v %v", nodes, err)
	}
	if err := s.NoteNode(ctx, NodeNote{Node: a.ID, Seen: time.Now(), Dequeue: true}); err != nil {
		t.Fatal(err)
	}
	if nodes, _ := s.Nodes(ctx); len(nodes) != 1 || nodes[0].Name != "a" {
		t.Errorf("after a dequeue: %+v", nodes)
	}
}

// A database of step 12 migrates: each done task gets its result's
// status on its row (a status given, or OK/RE by the exit code), the
// others none.
func TestTaskStatusMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.sqlite3")
	ctx := context.Background()
	s := open(t, path)
	u, _ := s.CreateUser(ctx, "alice", "h", RoleClient, time.Now())
	now := time.Now()
	for i, res := range []string{`{"status": "TLE", "result": 1}`, `{"result": 0}`, `{"result": 3}`, ``} {
		key := fmt.Sprintf("t%d", i)
		if _, err := s.w.Exec(`INSERT INTO tasks (key, user_id, description, limits, requires, exclusive, state, time_create, time_queued)
			VALUES (?, ?, '{}', '{}', '[]', 0, ?, ?, ?)`, key, u.ID, map[bool]int{true: stateQueued, false: stateDone}[res == ""], us(now), us(now)); err != nil {
			t.Fatal(err)
		}
		if res != "" {
			if _, err := s.w.Exec(`INSERT INTO results (task_id, user_id, description, fingerprint, time_create)
				SELECT id, NULL, ?, 'x', ? FROM tasks WHERE key = ?`, res, us(now), key); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, q := range append(undoStep13(), `UPDATE schema_version SET version = 12`) {
		if _, err := s.w.Exec(undoSQL(q)); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	got := map[string]string{}
	rows, err := s.r.Query(`SELECT key, status FROM tasks`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, st string
		if err := rows.Scan(&k, &st); err != nil {
			t.Fatal(err)
		}
		got[k] = st
	}
	want := map[string]string{"t0": "TLE", "t1": "OK", "t2": "RE", "t3": ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("statuses after migration: %v, want %v", got, want)
	}
}
