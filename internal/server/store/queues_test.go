package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/queue"
	"github.com/kolejka-go/kolejka/spec"
)

// defaultPlan is a dequeue of a node that asks for no queue (Kolejka's).
var defaultPlan = queue.Plan{{spec.DefaultQueue}}

func TestQueueTable(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite3"))
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	alice, _ := s.CreateUser(ctx, "alice", "h", RoleClient, now)
	node, _ := s.CreateUser(ctx, "a", "h", RoleProcessor, now)

	// The default queue is there from the start.
	qs, err := s.Queues(ctx)
	if err != nil || len(qs) != 1 || qs[0].Name != "default" || qs[0].Private || qs[0].Paused {
		t.Fatalf("a new database's queues: %+v %v", qs, err)
	}
	judge := queue.Queue{Name: "judge", Private: true, Submitters: []string{"alice"}, Nodes: []string{"a"}, Priority: 3}
	if err := s.AddQueue(ctx, judge, now); err != nil {
		t.Fatal(err)
	}
	if err := s.AddQueue(ctx, queue.Queue{Name: "judge"}, now); !errors.Is(err, ErrExists) {
		t.Errorf("a taken name: %v", err)
	}
	for _, c := range []struct {
		q     queue.Queue
		field string
		says  string
	}{
		{queue.Queue{Name: "../x"}, "name", "not a name"},
		{queue.Queue{Name: "p", Private: true, Submitters: []string{"nobody"}}, "submitters", `no user named "nobody"`},
		{queue.Queue{Name: "p", Private: true, Nodes: []string{"alice"}}, "nodes", `user "alice" is not a processor`},
		{queue.Queue{Name: "p", Private: true, Submitters: []string{"a"}}, "submitters", `user "a" is not a client`},
	} {
		var fe *queue.FieldError
		if err := s.AddQueue(ctx, c.q, now); !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%+v: %v; want a problem of %s saying %q", c.q, err, c.field, c.says)
		}
	}
	if qs, _ := s.Queues(ctx); len(qs) != 2 {
		t.Errorf("refused queues were stored: %+v", qs)
	}
	got, err := s.QueueRule(ctx, "judge")
	if err != nil || !reflect.DeepEqual(got, judge) {
		t.Errorf("judge read back as %+v %v", got, err)
	}

	// Figures: depth, running, the head's wait.
	for i := range 3 {
		insertIn(t, s, alice.ID, fmt.Sprintf("j%d", i), "judge", now.Add(time.Duration(i)*time.Second))
	}
	insertIn(t, s, alice.ID, "d0", "", now)
	r, err := s.Dequeue(ctx, DequeueRequest{Node: node.ID, Concurency: 1, Now: now, Lease: hour, Queues: queue.Plan{{"judge"}}})
	if err != nil || len(r.Tasks) != 1 || r.Tasks[0].Key != "j0" {
		t.Fatalf("dequeue from judge: %+v %v", r.Tasks, err)
	}
	q, err := s.Queue(ctx, "judge")
	if err != nil || q.Depth != 2 || q.Running != 1 || !q.Oldest.Equal(now.Add(time.Second).Truncate(time.Microsecond)) {
		t.Errorf("judge: depth %d running %d oldest %v, %v; want 2, 1, %v", q.Depth, q.Running, q.Oldest, err, now.Add(time.Second))
	}
	if _, err := s.Queue(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown queue: %v", err)
	}

	// Pause, resume; unknown names.
	if err := s.SetPaused(ctx, "judge", true); err != nil {
		t.Fatal(err)
	}
	if q, _ := s.QueueRule(ctx, "judge"); !q.Paused {
		t.Error("not paused")
	}
	if err := s.SetPaused(ctx, "nosuch", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("pause of an unknown queue: %v", err)
	}

	// Removal: never the default queue, not while tasks wait or run.
	if err := s.RemoveQueue(ctx, "default"); !errors.Is(err, ErrDefaultQueue) {
		t.Errorf("remove default: %v", err)
	}
	err = s.RemoveQueue(ctx, "judge")
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "2 queued and 1 running") {
		t.Errorf("remove a queue with tasks: %v", err)
	}
	for _, k := range []string{"j0", "j1", "j2"} {
		if err := s.DeleteTask(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RemoveQueue(ctx, "judge"); err != nil {
		t.Errorf("remove an empty queue: %v", err)
	}
	if err := s.RemoveQueue(ctx, "judge"); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove it again: %v", err)
	}
}

var hour = func([]spec.Limits, bool) time.Duration { return time.Hour }

// insertIn queues a task with key in queue q.
func insertIn(t testing.TB, s *Store, owner int64, key, q string, now time.Time) {
	t.Helper()
	if q == "" {
		q = spec.DefaultQueue
	}
	// The owner's name, for a private queue's rules.
	var name string
	if err := s.r.QueryRow(`SELECT name FROM users WHERE id = ?`, owner).Scan(&name); err != nil {
		t.Fatal(err)
	}
	if _, err := s.InsertTask(context.Background(), NewTask{Key: key, Owner: owner, Submitter: name, Description: []byte(`{}`), Limits: []byte(`{}`),
		Queue: q, Now: now}); err != nil {
		t.Fatal(err)
	}
}

// A dequeue walks its plan's groups by priority; inside a group it hands
// out the oldest task first whichever queue holds it; queues outside the
// plan are never looked at; the window bounds the whole dequeue.
func TestDequeueOverQueues(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite3"))
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	o, _ := s.CreateUser(ctx, "o", "h", RoleClient, now)
	n, _ := s.CreateUser(ctx, "n", "h", RoleProcessor, now)
	// Submission order across queues: a0 b0 c0 a1 b1 c1 ... (40 each, so
	// that pages of every cursor are read past the first).
	for _, q := range []string{"a", "b", "c", "high", "low"} {
		if err := s.AddQueue(ctx, queue.Queue{Name: q}, now); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	for i := range 40 {
		for _, q := range []string{"a", "b", "c"} {
			k := fmt.Sprintf("%s%02d", q, i)
			insertIn(t, s, o.ID, k, q, now)
			order = append(order, k)
		}
	}
	insertIn(t, s, o.ID, "d00", "", now)
	take := func(plan queue.Plan, n1 int, window int) ([]string, int) {
		t.Helper()
		r, err := s.Dequeue(ctx, DequeueRequest{Node: n.ID, Concurency: n1, Now: now, Lease: hour, Queues: plan, Window: window})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, a := range r.Tasks {
			keys = append(keys, a.Key)
		}
		return keys, r.Scanned
	}
	// Group {b} before group {a, c}: all of b first, then a and c merged.
	var got []string
	for {
		keys, _ := take(queue.Plan{{"b"}, {"a", "c"}}, 7, 0)
		if len(keys) == 0 {
			break
		}
		got = append(got, keys...)
	}
	var want []string
	for _, k := range order {
		if k[0] == 'b' {
			want = append(want, k)
		}
	}
	for _, k := range order {
		if k[0] != 'b' {
			want = append(want, k)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("handed out\n %v\nwant\n %v", got, want)
	}
	// The default queue's task was never in the plan: it waits.
	if keys, _ := take(queue.Plan{}, 1, 0); keys != nil {
		t.Errorf("an empty plan handed out %v", keys)
	}
	if keys, _ := take(defaultPlan, 5, 0); !reflect.DeepEqual(keys, []string{"d00"}) {
		t.Errorf("the default queue: %v", keys)
	}

	// The window bounds the whole dequeue: 5 unfit tasks in a high group
	// and a window of 5 leave the low group unseen.
	for i := range 5 {
		if _, err := s.InsertTask(ctx, NewTask{Key: fmt.Sprintf("h%d", i), Owner: o.ID, Description: []byte(`{}`), Limits: []byte(`{}`),
			Requires: []string{"gpu"}, Queue: "high", Now: now}); err != nil {
			t.Fatal(err)
		}
	}
	insertIn(t, s, o.ID, "low0", "low", now)
	if keys, scanned := take(queue.Plan{{"high"}, {"low"}}, 1, 5); keys != nil || scanned != 5 {
		t.Errorf("window 5: took %v after %d looked at; want nothing after 5", keys, scanned)
	}
	if keys, scanned := take(queue.Plan{{"high"}, {"low"}}, 1, 6); !reflect.DeepEqual(keys, []string{"low0"}) || scanned != 6 {
		t.Errorf("window 6: took %v after %d looked at; want low0 after 6", keys, scanned)
	}
}

// queue_counts agrees with counting, through every change a task goes
// through, and step 9 fills it from the tasks already there.
func TestQueueCountsKeptByTriggers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.sqlite3")
	s := open(t, path)
	ctx := context.Background()
	now := time.Now()
	o, _ := s.CreateUser(ctx, "o", "h", RoleClient, now)
	n, _ := s.CreateUser(ctx, "n", "h", RoleProcessor, now)
	agree := func(when string) {
		t.Helper()
		rows, err := s.r.Query(`SELECT q.name, s.state,
				(SELECT COUNT(*) FROM tasks t WHERE t.queue = q.name AND t.state = s.state),
				COALESCE((SELECT c.n FROM queue_counts c WHERE c.queue = q.name AND c.state = s.state), 0)
			FROM (SELECT 'a' AS name UNION ALL SELECT 'b' UNION ALL SELECT 'default') q, (SELECT 0 AS state UNION ALL SELECT 1) s`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var q string
			var state, counted, kept int64
			rows.Scan(&q, &state, &counted, &kept)
			if counted != kept {
				t.Errorf("%s: queue %s state %d: %d tasks, queue_counts says %d", when, q, state, counted, kept)
			}
		}
	}
	for _, q := range []string{"a", "b"} {
		if err := s.AddQueue(ctx, queue.Queue{Name: q}, now); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		insertIn(t, s, o.ID, fmt.Sprintf("a%d", i), "a", now)
		insertIn(t, s, o.ID, fmt.Sprintf("b%d", i), "b", now)
	}
	insertIn(t, s, o.ID, "d0", "", now)
	agree("inserted")
	short := func([]spec.Limits, bool) time.Duration { return time.Millisecond }
	if _, err := s.Dequeue(ctx, DequeueRequest{Node: n.ID, Concurency: 5, Now: now, Lease: short, Expiry: Expiry{MaxAttempts: 1},
		Queues: queue.Plan{{"a", "b"}}}); err != nil {
		t.Fatal(err)
	}
	agree("dequeued")
	if _, err := s.PostResult(ctx, NewResult{TaskKey: "a0", Poster: n.ID, Description: []byte(`{}`),
		Fingerprint: func(map[string]string) (string, error) { return "x", nil }, Now: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, n.ID, []string{"b0"}, now); err != nil {
		t.Fatal(err)
	}
	agree("a result and a release")
	if _, err := s.ExpireLeases(ctx, now.Add(time.Second), Expiry{MaxAttempts: 1}); err != nil { // SE results
		t.Fatal(err)
	}
	s.DeleteTask(ctx, "a5")
	s.DeleteTask(ctx, "d0")
	agree("expired and deleted")
	s.Close()

	// A database of step 8 with tasks: step 9 counts them.
	s = open(t, path)
	for _, q := range append(undoStep10(), `DROP TRIGGER tasks_queue_count_insert`, `DROP TRIGGER tasks_queue_count_delete`,
		`DROP TRIGGER tasks_queue_count_update`, `DROP TABLE queue_counts`, `UPDATE schema_version SET version = 8`) {
		if _, err := s.w.Exec(undoSQL(q)); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The task as a program of step 8 wrote it (today's InsertTask writes
	// step 10's columns).
	if _, err := s.w.Exec(`INSERT INTO tasks (key, user_id, description, limits, requires, exclusive, state, time_create, time_queued, queue)
		VALUES ('b9', ?, '{}', '{}', '[]', 0, 0, ?, ?, 'b')`, o.ID, us(now), us(now)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	agree("migrated")
	if q, err := s.Queue(ctx, "b"); err != nil || q.Depth == 0 {
		t.Errorf("b after migration: %+v %v", q, err)
	}
}

// A task for a queue that does not exist, or that is private to others,
// is refused by the insert itself (its transaction reads the queue's
// rules), and nothing is recorded.
func TestInsertTaskQueueRules(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite3"))
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	o, _ := s.CreateUser(ctx, "o", "h", RoleClient, now)
	if _, err := s.CreateUser(ctx, "p", "h", RoleClient, now); err != nil {
		t.Fatal(err)
	}
	if err := s.AddQueue(ctx, queue.Queue{Name: "mine", Private: true, Submitters: []string{"p"}}, now); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		queue string
		is    error
		says  string
	}{
		{"gone", ErrNotFound, `no queue named "gone"`},
		{"mine", queue.ErrDenied, `queue "mine" is private: user o`},
	} {
		_, err := s.InsertTask(ctx, NewTask{Key: "k", Owner: o.ID, Submitter: "o", Description: []byte(`{}`), Limits: []byte(`{}`), Queue: c.queue, Now: now})
		var qe *QueueError
		if !errors.As(err, &qe) || !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("insert into %s: %v, want a QueueError saying %q", c.queue, err, c.says)
		}
		if _, err := s.Task(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Errorf("the refused task was recorded: %v", err)
		}
	}
	if _, err := s.InsertTask(ctx, NewTask{Key: "k", Owner: o.ID, Submitter: "p", Description: []byte(`{}`), Limits: []byte(`{}`), Queue: "mine", Now: now}); err != nil {
		t.Errorf("a submitter of the private queue: %v", err)
	}
}
