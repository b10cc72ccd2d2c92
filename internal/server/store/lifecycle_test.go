package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/queue"
	"github.com/kolejka-go/kolejka/spec"
)

type lifecycleEnv struct {
	s           *Store
	ctx         context.Context
	now         time.Time
	alice, bob  User
	node, node2 User
}

func newLifecycleEnv(t *testing.T) *lifecycleEnv {
	t.Helper()
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite3"))
	t.Cleanup(func() { s.Close() })
	e := &lifecycleEnv{s: s, ctx: context.Background(), now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var err error
	for _, u := range []struct {
		p    *User
		name string
		role Role
	}{{&e.alice, "alice", RoleClient}, {&e.bob, "bob", RoleClient}, {&e.node, "node", RoleProcessor}, {&e.node2, "node2", RoleProcessor}} {
		if *u.p, err = s.CreateUser(e.ctx, u.name, "h", u.role, e.now); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *lifecycleEnv) insert(t *testing.T, key string, owner User, queue, typ string, requires ...string) {
	t.Helper()
	if _, err := e.s.InsertTask(e.ctx, NewTask{Key: key, Owner: owner.ID, Description: []byte(`{}`), Limits: []byte(`{}`),
		Requires: requires, Queue: queue, TypeName: typ, Now: e.now}); err != nil {
		t.Fatal(err)
	}
}

func (e *lifecycleEnv) dequeue(t *testing.T, node User, tags ...string) []string {
	t.Helper()
	r, err := e.s.Dequeue(e.ctx, DequeueRequest{Node: node.ID, Tags: tags, Concurency: 10, Now: e.now, Heartbeat: true,
		Lease: func([]spec.Limits, bool) time.Duration { return time.Minute }, Expiry: Expiry{MaxAttempts: 3}, Queues: defaultPlan})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, a := range r.Tasks {
		keys = append(keys, a.Key)
	}
	return keys
}

func (e *lifecycleEnv) post(node User, key, status string) error {
	_, err := e.s.PostResult(e.ctx, NewResult{TaskKey: key, Poster: node.ID, Description: []byte(`{"status": "` + status + `"}`),
		Fingerprint: func(map[string]string) (string, error) { return status, nil }, Now: e.now})
	return err
}

func keysOf(list []TaskSummary) []string {
	out := make([]string, len(list))
	for i, ts := range list {
		out[i] = ts.Key
	}
	return out
}

// A user's listing is newest first, pages by the last key seen, filters by
// state, queue and type, and never shows another user's tasks (unless
// every user's are asked for).
func TestListTasksOf(t *testing.T) {
	e := newLifecycleEnv(t)
	if err := e.s.AddQueue(e.ctx, queue.Queue{Name: "fast"}, e.now); err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		queue, typ := "", ""
		if i%2 == 1 {
			queue = "fast"
		}
		if i == 3 {
			typ = "judge"
		}
		e.insert(t, fmt.Sprintf("a%d", i), e.alice, queue, typ, "never")
	}
	e.insert(t, "b0", e.bob, "", "", "never")
	e.insert(t, "a7", e.alice, "", "", "run")
	if got := e.dequeue(t, e.node, "run"); !slices.Equal(got, []string{"a7"}) {
		t.Fatalf("dequeue: %v", got)
	}
	if _, err := e.s.Cancel(e.ctx, "a2", e.now); err != nil {
		t.Fatal(err)
	}
	list := func(q TaskQuery) []string {
		t.Helper()
		got, err := e.s.ListTasksOf(e.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return keysOf(got)
	}
	state := func(s State) *State { return &s }
	for _, c := range []struct {
		name string
		q    TaskQuery
		want []string
	}{
		{"own", TaskQuery{Owner: e.alice.ID}, []string{"a7", "a6", "a5", "a4", "a3", "a2", "a1", "a0"}},
		{"page 1", TaskQuery{Owner: e.alice.ID, Limit: 3}, []string{"a7", "a6", "a5"}},
		{"page 2", TaskQuery{Owner: e.alice.ID, Limit: 3, Before: "a5"}, []string{"a4", "a3", "a2"}},
		{"page 3", TaskQuery{Owner: e.alice.ID, Limit: 3, Before: "a2"}, []string{"a1", "a0"}},
		{"running", TaskQuery{Owner: e.alice.ID, State: state(Assigned)}, []string{"a7"}},
		{"cancelled", TaskQuery{Owner: e.alice.ID, State: state(Cancelled)}, []string{"a2"}},
		{"queue", TaskQuery{Owner: e.alice.ID, Queue: "fast"}, []string{"a5", "a3", "a1"}},
		{"type", TaskQuery{Owner: e.alice.ID, Type: "judge"}, []string{"a3"}},
		{"bob", TaskQuery{Owner: e.bob.ID}, []string{"b0"}},
		{"all", TaskQuery{Limit: 3}, []string{"a7", "b0", "a6"}},
		{"all queued", TaskQuery{State: state(Queued), Before: "a6"}, []string{"a5", "a4", "a3", "a1", "a0"}},
	} {
		if got := list(c.q); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	all, _ := e.s.ListTasksOf(e.ctx, TaskQuery{Owner: e.alice.ID, Limit: 1})
	if ts := all[0]; ts.Node != "node" || ts.State != Assigned || ts.Attempts != 1 || ts.OwnerName != "alice" || ts.Queue != "default" {
		t.Errorf("a7 listed as %+v", ts)
	}
	if _, err := e.s.ListTasksOf(e.ctx, TaskQuery{Before: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("before an unknown key: %v", err)
	}
}

// A queued task cancelled is never handed out; cancelling again is a
// no-op; a finished task cannot be cancelled.
func TestCancelQueued(t *testing.T) {
	e := newLifecycleEnv(t)
	e.insert(t, "k1", e.alice, "", "")
	e.insert(t, "k2", e.alice, "", "")
	at := e.now.Add(time.Minute)
	r, err := e.s.Cancel(e.ctx, "k1", at)
	if err != nil || r.Was != Queued {
		t.Fatalf("cancel: %+v %v", r, err)
	}
	if got := e.dequeue(t, e.node); !slices.Equal(got, []string{"k2"}) {
		t.Errorf("dequeue after cancel took %v, want k2 only", got)
	}
	d, err := e.s.TaskDetail(e.ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != Cancelled || !d.TimeFinish.Equal(at) || d.Assignee != 0 || len(d.History) != 0 || d.State.String() != "cancelled" {
		t.Errorf("cancelled task: %+v", d)
	}
	if r, err := e.s.Cancel(e.ctx, "k1", at.Add(time.Hour)); err != nil || r.Was != Cancelled {
		t.Errorf("cancel again: %+v %v", r, err)
	}
	if d, _ := e.s.TaskDetail(e.ctx, "k1"); !d.TimeFinish.Equal(at) {
		t.Errorf("a second cancel moved time_finish to %v", d.TimeFinish)
	}
	if err := e.post(e.node, "k2", "OK"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Cancel(e.ctx, "k2", at); !errors.Is(err, ErrFinished) {
		t.Errorf("cancel of a finished task: %v", err)
	}
	if _, err := e.s.Cancel(e.ctx, "nope", at); !errors.Is(err, ErrNotFound) {
		t.Errorf("cancel of an unknown task: %v", err)
	}
	st, _ := e.s.Stats(e.ctx)
	var counted int64
	e.s.r.QueryRow(`SELECT n FROM task_counts WHERE state = 3`).Scan(&counted)
	if counted != 1 || st.Unassigned != 0 || st.Resolved != 1 {
		t.Errorf("counts after cancel: cancelled %d, %+v", counted, st)
	}
}

// A running task cancelled: its node's heartbeat reports it lost, the node
// no longer holds it (an exclusive task may go to it at once), its result
// is refused, also as a late result, and it stays cancelled.
func TestCancelRunning(t *testing.T) {
	e := newLifecycleEnv(t)
	e.insert(t, "run", e.alice, "", "")
	if got := e.dequeue(t, e.node); !slices.Equal(got, []string{"run"}) {
		t.Fatalf("dequeue: %v", got)
	}
	if _, err := e.s.InsertTask(e.ctx, NewTask{Key: "excl", Owner: e.alice.ID, Description: []byte(`{}`), Limits: []byte(`{}`),
		Exclusive: true, Now: e.now}); err != nil {
		t.Fatal(err)
	}
	if got := e.dequeue(t, e.node); got != nil {
		t.Fatalf("an exclusive task went to a busy node: %v", got)
	}
	r, err := e.s.Cancel(e.ctx, "run", e.now.Add(time.Second))
	if err != nil || r.Was != Assigned || r.Node != e.node.ID {
		t.Fatalf("cancel: %+v %v", r, err)
	}
	hb, err := e.s.Heartbeat(e.ctx, e.node.ID, []string{"run"}, e.now.Add(time.Minute))
	if err != nil || !slices.Equal(hb.Lost, []string{"run"}) {
		t.Errorf("heartbeat after cancel: %+v %v", hb, err)
	}
	if got := e.dequeue(t, e.node); !slices.Equal(got, []string{"excl"}) {
		t.Errorf("the node still counts as holding the cancelled task: dequeue %v", got)
	}
	if err := e.post(e.node, "run", "OK"); !errors.Is(err, ErrCancelled) {
		t.Errorf("result for a cancelled task: %v", err)
	}
	if err := e.post(e.node2, "run", "OK"); !errors.Is(err, ErrNotAssigned) {
		t.Errorf("result from a node that never held it: %v", err)
	}
	d, err := e.s.TaskDetail(e.ctx, "run")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != Cancelled || d.HasResult || d.Node != "node" || len(d.History) != 1 || d.History[0].Node != "node" ||
		!d.TimeStart.Equal(e.now) || d.ResultStatus != "" {
		t.Errorf("after the refused result: %+v", d)
	}
	// An expiry pass later does not bring it back.
	if _, err := e.s.ExpireLeases(e.ctx, e.now.Add(time.Hour), Expiry{MaxAttempts: 1}); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.s.TaskDetail(e.ctx, "run"); d.State != Cancelled {
		t.Errorf("after expiry: %v", d.State)
	}
}

// A result, and an SE the server makes, set time_finish; the detail reads
// the verdict from the result.
func TestTimeFinish(t *testing.T) {
	e := newLifecycleEnv(t)
	e.insert(t, "ok", e.alice, "", "judge")
	e.insert(t, "lost", e.alice, "", "")
	e.dequeue(t, e.node)
	e.now = e.now.Add(time.Second)
	if err := e.post(e.node, "ok", "TLE"); err != nil {
		t.Fatal(err)
	}
	lapse := e.now.Add(2 * time.Minute)
	if _, err := e.s.ExpireLeases(e.ctx, lapse, Expiry{MaxAttempts: 1}); err != nil {
		t.Fatal(err)
	}
	d, _ := e.s.TaskDetail(e.ctx, "ok")
	if !d.TimeFinish.Equal(e.now) || d.ResultStatus != "TLE" || d.TypeName != "judge" || d.Queue != "default" || d.State != Done {
		t.Errorf("ok: %+v", d)
	}
	d, _ = e.s.TaskDetail(e.ctx, "lost")
	if !d.TimeFinish.Equal(lapse) || d.ResultStatus != "SE" {
		t.Errorf("lost: finish %v status %q", d.TimeFinish, d.ResultStatus)
	}
}

// The listings are index searches, without sorting: a user's from
// tasks_owner, every user's in one state from tasks_queue, every user's
// from the primary key backwards.
func TestListPlans(t *testing.T) {
	sqliteOnly(t, "SQLite's query plans")
	s := open(t, filepath.Join(t.TempDir(), "db.sqlite3"))
	defer s.Close()
	queued := Queued
	for _, c := range []struct {
		q      TaskQuery
		before int64
		index  string
	}{
		{TaskQuery{Owner: 1}, 5, "tasks_owner"},
		{TaskQuery{Owner: 1, State: &queued}, 0, "tasks_owner"},
		{TaskQuery{Owner: 1, Queue: "q", Type: "t"}, 0, "tasks_owner"},
		{TaskQuery{State: &queued}, 5, "tasks_queue"},
		{TaskQuery{}, 5, "INTEGER PRIMARY KEY"},
	} {
		q, args := listSQL(c.q, c.before)
		rows, err := s.w.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			rows.Scan(&id, &parent, &unused, &detail)
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "; ")
		if !strings.Contains(joined, "SEARCH t USING") || !strings.Contains(joined, c.index) || strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("%+v\n  plan: %s\n  want a search of %s without sorting", c.q, joined, c.index)
		}
	}
}

// FinishedPerMinute counts ends by minute, state and status, from the
// index on time_finish: what ended before the span is left out.
func TestFinishedPerMinute(t *testing.T) {
	e := newLifecycleEnv(t)
	for _, k := range []string{"f1", "f2", "f3", "f4"} {
		e.insert(t, k, e.alice, "", "")
	}
	got := e.dequeue(t, e.node)
	if len(got) != 4 {
		t.Fatalf("dequeued %v", got)
	}
	for k, status := range map[string]string{"f1": "OK", "f2": "OK", "f3": "TLE"} {
		if err := e.post(e.node, k, status); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.s.Cancel(e.ctx, "f4", e.now); err != nil {
		t.Fatal(err)
	}
	ms, err := e.s.FinishedPerMinute(e.ctx, e.now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, m := range ms {
		if !m.Minute.Equal(e.now.Truncate(time.Minute)) {
			t.Errorf("minute %v, want %v", m.Minute, e.now.Truncate(time.Minute))
		}
		counts[m.State.String()+"/"+m.Status] += m.N
	}
	want := map[string]int{Done.String() + "/OK": 2, Done.String() + "/TLE": 1, Cancelled.String() + "/": 1}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("counts %v, want %v", counts, want)
	}
	if ms, err := e.s.FinishedPerMinute(e.ctx, e.now.Add(time.Minute)); err != nil || len(ms) != 0 {
		t.Fatalf("after the ends: %v %v", ms, err)
	}
	if testBackend != "sqlite" {
		return // the rest reads SQLite's query plan
	}
	var plan string
	rows, err := e.s.r.Query(`EXPLAIN QUERY PLAN SELECT t.time_finish / 60000000, t.state, t.status, COUNT(*) FROM tasks t WHERE t.time_finish >= ? AND t.time_finish IS NOT NULL GROUP BY 1, 2, 3`, 0)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a, b, c int
		var d string
		if err := rows.Scan(&a, &b, &c, &d); err != nil {
			t.Fatal(err)
		}
		plan += d + "\n"
	}
	rows.Close()
	if !strings.Contains(plan, "COVERING INDEX tasks_finish") {
		t.Errorf("the count does not use the index tasks_finish:\n%s", plan)
	}
}
