package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
)

// addQueues adds the queues of these tests: judge (private: alice submits,
// node takes; priority 5), batch (public, priority 1), held (public,
// paused).
func addQueues(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []server.Queue{
		{Name: "judge", Private: true, Submitters: []string{"alice"}, Nodes: []string{"node"}, Priority: 5},
		{Name: "batch", Priority: 1},
		{Name: "held", Paused: true},
	} {
		if err := e.srv.AddQueue(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
}

// A submission names an existing queue its submitter may use, or is
// refused naming the queue, with nothing stored.
func TestQueueSubmission(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	addQueues(t, e)
	alice, bob := e.tok("alice"), e.tok("bob")
	for _, c := range []struct {
		who   *tokenClient
		queue string
		want  string
	}{
		{bob, "judge", `kolejka_task.json: queue: queue "judge" is private: user bob may not submit to it`},
		{alice, "nosuch", `kolejka_task.json: queue: no queue named "nosuch"`},
		{alice, "../x", `kolejka_task.json: queue: "../x" is not a name`},
		{alice, "a b", `queue: "a b" is not a name`},
		{alice, strings.Repeat("q", 100), "queue: "},
	} {
		a := c.who.postJSON("/task/task/", task(map[string]any{"queue": c.queue}))
		if a.status() != "FAIL" || !strings.Contains(a.message(), c.want) {
			t.Errorf("queue %.20q: %v; want a FAIL saying %q", c.queue, a, c.want)
		}
	}
	if n := e.count("tasks"); n != 0 {
		t.Fatalf("%d tasks stored by refused submissions", n)
	}
	// Allowed: its submitter to the private queue, anyone to a public or a
	// paused one, and the default queue named or not.
	alice.submit(task(map[string]any{"queue": "judge"}), nil)
	bob.submit(task(map[string]any{"queue": "batch"}), nil)
	bob.submit(task(map[string]any{"queue": "held"}), nil)
	bob.submit(task(map[string]any{"queue": "default"}), nil)
	bob.submit(task(nil), nil)
	if n := e.count("tasks"); n != 5 {
		t.Errorf("%d tasks stored, want 5", n)
	}
}

// A node takes from the queues it asks for (none: the default queue),
// higher priority first; a private queue's tasks go only to its nodes; a
// paused queue keeps its tasks until resumed.
func TestQueueDequeue(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	addQueues(t, e)
	alice, node, node2 := e.tok("alice"), e.tok("node"), e.tok("node2")
	def := alice.submit(task(nil), nil)
	batch := alice.submit(task(map[string]any{"queue": "batch"}), nil)
	judge := alice.submit(task(map[string]any{"queue": "judge"}), nil)
	held := alice.submit(task(map[string]any{"queue": "held"}), nil)
	all := []string{"default", "batch", "judge", "held"}

	// node2 is not among judge's nodes: it gets batch's, then default's
	// (priority 1 before 0), never judge's or held's.
	for _, want := range []string{batch, def} {
		got := ids(dequeue(t, node2, map[string]any{"concurency": 1, "queues": all}))
		if !slices.Equal(got, []string{want}) {
			t.Fatalf("node2 took %v, want %s", got, want)
		}
	}
	if got := ids(dequeue(t, node2, map[string]any{"concurency": 4, "queues": all})); got != nil {
		t.Errorf("node2 took %v from judge or held", got)
	}
	// Kolejka's foreman asks for no queue: the default one only.
	if got := ids(dequeue(t, node, map[string]any{"concurency": 4})); got != nil {
		t.Errorf("a dequeue without queues took %v", got)
	}
	if got := ids(dequeue(t, node, map[string]any{"concurency": 4, "queues": all})); !slices.Equal(got, []string{judge}) {
		t.Errorf("node took %v, want judge's %s", got, judge)
	}
	// Resumed, held's task goes out.
	if err := e.srv.SetQueuePaused(context.Background(), "held", false); err != nil {
		t.Fatal(err)
	}
	if got := ids(dequeue(t, node2, map[string]any{"concurency": 4, "queues": []string{"held"}})); !slices.Equal(got, []string{held}) {
		t.Errorf("after resume: %v, want %s", got, held)
	}
	// A queue name that is not one is a FAIL naming it.
	a := node.postJSON("/queue/dequeue/", map[string]any{"queues": []string{"ok", "no/pe"}})
	if a.status() != "FAIL" || !strings.Contains(a.message(), `dequeue: queues[1]: "no/pe" is not a name`) {
		t.Errorf("bad queue name: %v", a)
	}
}

// A long poll waiting on a paused queue sees a resume made by an admin
// command in another process (which cannot wake it) within a recheck.
func TestQueueResumeFromAnotherProcess(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	addQueues(t, e)
	key := e.tok("alice").submit(task(map[string]any{"queue": "held"}), nil)
	admin, err := server.OpenAdmin(server.Config{DataDir: e.dir, Database: e.cfg.Database})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	got := make(chan []string, 1)
	start := time.Now()
	go func() {
		got <- ids(dequeue(t, e.tok("node"), map[string]any{"queues": []string{"held"}, "wait": 20}))
	}()
	<-e.paused // the poll waits
	if err := admin.SetQueuePaused(context.Background(), "held", false); err != nil {
		t.Fatal(err)
	}
	keys := <-got
	if !slices.Equal(keys, []string{key}) || time.Since(start) > 10*time.Second {
		t.Errorf("after %v the poll took %v, want %s within a few seconds", time.Since(start), keys, key)
	}
}

// /queue/stats/ and /metrics show each queue's figures.
func TestQueueFigures(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	addQueues(t, e)
	alice := e.tok("alice")
	for range 3 {
		alice.submit(task(map[string]any{"queue": "batch"}), nil)
	}
	alice.submit(task(map[string]any{"queue": "judge"}), nil)
	dequeue(t, e.tok("node2"), map[string]any{"concurency": 1, "queues": []string{"batch"}})

	st := mustOK(t, alice.do("GET", "/queue/stats/", nil))
	queues, _ := st.json["queues"].(map[string]any)
	batch, _ := queues["batch"].(map[string]any)
	held, _ := queues["held"].(map[string]any)
	judge, _ := queues["judge"].(map[string]any)
	if batch["depth"] != 2.0 || batch["running"] != 1.0 || batch["priority"] != 1.0 || batch["paused"] != false {
		t.Errorf("batch: %v", batch)
	}
	if age, _ := batch["oldest_age_seconds"].(float64); age < 0 || age > 60 {
		t.Errorf("batch's oldest age %v", batch["oldest_age_seconds"])
	}
	if held["paused"] != true || held["depth"] != 0.0 || held["oldest_age_seconds"] != 0.0 {
		t.Errorf("held: %v", held)
	}
	if judge["private"] != true || judge["depth"] != 1.0 || judge["priority"] != 5.0 {
		t.Errorf("judge: %v", judge)
	}
	if st.json["task_unassigned_count"] != 3.0 {
		t.Errorf("Kolejka's counts changed: %v", st.json)
	}

	resp, err := http.Get(e.base + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`kolejka_queue_queued_tasks{queue="batch"} 2`,
		`kolejka_queue_running_tasks{queue="batch"} 1`,
		`kolejka_queue_queued_tasks{queue="judge"} 1`,
		`kolejka_queue_paused{queue="held"} 1`,
		`kolejka_queue_paused{queue="batch"} 0`,
		`kolejka_queue_oldest_wait_seconds{queue="held"} 0`,
		`kolejka_queue_oldest_wait_seconds{queue="batch"} `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// The admin API refuses bad definitions and removals, changing nothing.
func TestQueueAdmin(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	addQueues(t, e)
	ctx := context.Background()
	for _, c := range []struct {
		q    server.Queue
		is   error
		says string
	}{
		{server.Queue{Name: "judge"}, server.ErrExists, `"judge"`},
		{server.Queue{Name: "../x"}, server.ErrInvalid, "name: "},
		{server.Queue{Name: "p", Private: true, Submitters: []string{"nobody"}}, server.ErrInvalid, `submitters: no user named "nobody"`},
		{server.Queue{Name: "p", Private: true, Nodes: []string{"alice"}}, server.ErrInvalid, `nodes: user "alice" is not a processor`},
		{server.Queue{Name: "p", Submitters: []string{"alice"}}, server.ErrInvalid, "submitters: only a private queue"},
	} {
		if err := e.srv.AddQueue(ctx, c.q); !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%+v: %v; want %v saying %q", c.q, err, c.is, c.says)
		}
	}
	e.tok("alice").submit(task(map[string]any{"queue": "batch"}), nil)
	if err := e.srv.RemoveQueue(ctx, "batch"); !errors.Is(err, server.ErrInUse) || !strings.Contains(err.Error(), "1 queued and 0 running") {
		t.Errorf("remove batch: %v", err)
	}
	if err := e.srv.RemoveQueue(ctx, "default"); !errors.Is(err, server.ErrInvalid) {
		t.Errorf("remove default: %v", err)
	}
	if err := e.srv.SetQueuePaused(ctx, "nosuch", true); !errors.Is(err, server.ErrNotFound) {
		t.Errorf("pause nosuch: %v", err)
	}
	qs, err := e.srv.Queues(ctx)
	if err != nil || len(qs) != 4 {
		t.Errorf("queues after refusals: %d %v", len(qs), err)
	}
	if err := e.srv.RemoveQueue(ctx, "held"); err != nil {
		t.Errorf("remove held: %v", err)
	}
}
