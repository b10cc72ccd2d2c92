package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

func shortLeases(lease time.Duration, attempts int) func(*server.Config) {
	return func(c *server.Config) {
		c.LeaseTime = lease
		c.LeaseMargin = lease
		c.DefaultTaskTime = lease
		c.MaxAttempts = attempts
		c.ExpiryInterval = 10 * time.Millisecond
	}
}

func taskInfo(t *testing.T, e *env, key string) server.TaskInfo {
	t.Helper()
	all, err := e.srv.ListTasks(context.Background(), server.TaskFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range all {
		if ti.Key == key {
			return ti
		}
	}
	t.Fatalf("task %s not listed", key)
	return server.TaskInfo{}
}

// waitFor polls cond (a state the server reaches in the background) for up
// to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, what, cond)
}

// A heartbeating node keeps its task while it heartbeats; once silent
// past its lease the task goes back to the queue with its attempt
// counted, and another node gets it. The server's clock is the test's:
// the expiry loop runs all along and sees only the time the test makes.
func TestLeaseHeartbeatAndRequeue(t *testing.T) {
	clk := newClock()
	e := newEnv(t, shortLeases(300*time.Millisecond, 3), withClock(clk))
	e.standardUsers()
	a, n1, n2 := e.tok("alice"), e.tok("node"), e.tok("node2")
	key := a.submit(task(nil), nil)
	other := a.submit(task(map[string]any{"requires": []string{"elsewhere"}}), nil)
	got := ids(dequeue(t, n1, map[string]any{"heartbeat": true}))
	if !slices.Equal(got, []string{key}) {
		t.Fatalf("got %v", got)
	}
	// Heartbeat through 1 s (> 3 leases): the task stays with node.
	for range 10 {
		clk.Advance(100 * time.Millisecond)
		hb := mustOK(t, n1.postJSON("/queue/heartbeat/", map[string]any{"tasks": []string{key, other}}))
		if held := hb.json["tasks"].([]any); len(held) != 1 || held[0] != key {
			t.Fatalf("heartbeat held %v", hb.json)
		}
		if lost := hb.json["lost"].([]any); len(lost) != 1 || lost[0] != other {
			t.Fatalf("heartbeat lost %v", hb.json)
		}
		if hb.json["lease"] != "0.3s" {
			t.Errorf("lease = %v", hb.json["lease"])
		}
	}
	if ti := taskInfo(t, e, key); ti.AssigneeName != "node" || ti.Attempts != 1 {
		t.Fatalf("after heartbeats: %+v", ti)
	}
	// An empty body, {} or an empty list means all the node's tasks.
	for _, body := range []string{"", "{}", `{"tasks": []}`} {
		hb := mustOK(t, n1.do("POST", "/queue/heartbeat/", []byte(body)))
		if held := hb.json["tasks"].([]any); len(held) != 1 || held[0] != key {
			t.Errorf("heartbeat %q held %v", body, hb.json)
		}
	}
	// Silence: the task comes back and node2, waiting, gets it (the
	// expiry loop wakes its long poll).
	taken := make(chan []string, 1)
	e.polling(func() { taken <- ids(dequeue(t, n2, map[string]any{"wait": 30})) })
	clk.Advance(400 * time.Millisecond)
	if got := <-taken; !slices.Equal(got, []string{key}) {
		t.Fatalf("node2 got %v", got)
	}
	if ti := taskInfo(t, e, key); ti.AssigneeName != "node2" || ti.Attempts != 2 {
		t.Errorf("after requeue: %+v", ti)
	}
	hb := mustOK(t, n1.postJSON("/queue/heartbeat/", map[string]any{"tasks": []string{key}}))
	if lost := hb.json["lost"].([]any); len(lost) != 1 {
		t.Errorf("node1 should have lost the task: %v", hb.json)
	}
}

// After MaxAttempts lost leases the server gives the task an SE result
// (status SE, no exit code), and a client waiting for it learns at once.
func TestLeaseSEAfterAttempts(t *testing.T) {
	clk := newClock()
	e := newEnv(t, shortLeases(200*time.Millisecond, 2), withClock(clk))
	e.standardUsers()
	a, n1, n2 := e.tok("alice"), e.tok("node"), e.tok("node2")
	key := a.submit(task(nil), nil)
	if got := ids(dequeue(t, n1, map[string]any{"heartbeat": true})); len(got) != 1 {
		t.Fatal(got)
	}
	second := make(chan []string, 1)
	e.polling(func() { second <- ids(dequeue(t, n2, map[string]any{"heartbeat": true, "wait": 30})) })
	clk.Advance(300 * time.Millisecond)
	if got := <-second; !slices.Equal(got, []string{key}) {
		t.Fatalf("second attempt: %v", got)
	}
	// The client waiting for the result learns of the SE at once.
	result := make(chan answer, 1)
	e.polling(func() { result <- a.do("GET", "/task/result/"+key+"/?wait=30", nil) })
	clk.Advance(300 * time.Millisecond)
	r := mustOK(t, <-result).json["result"].(map[string]any)
	if r["status"] != "SE" || r["id"] != key {
		t.Errorf("result = %v", r)
	}
	if _, has := r["result"]; has {
		t.Errorf("an SE result made by the server has no exit code: %v", r)
	}
	if ti := taskInfo(t, e, key); ti.State.String() != "resolved" || ti.Attempts != 2 {
		t.Errorf("task: %+v", ti)
	}
	// The nodes' late results are refused: the task has its one result.
	if a := n2.postJSON("/task/result/", map[string]any{"id": key, "result": 0}); a.status() != "FAIL" {
		t.Errorf("late result after SE: %v", a)
	}
	if got := dequeue(t, n1, map[string]any{}); len(got) != 0 {
		t.Errorf("resolved task handed out again: %v", ids(got))
	}
}

// A node that never heartbeats (Kolejka's foreman) keeps its tasks for the
// lease derived from their time limits, long past the heartbeat lease.
func TestLeasePythonNodeKeepsTasks(t *testing.T) {
	clk := newClock()
	e := newEnv(t, withClock(clk), func(c *server.Config) {
		c.LeaseTime = 100 * time.Millisecond
		c.LeaseMargin = 500 * time.Millisecond
		c.DefaultTaskTime = 3 * time.Second
		c.ExpiryInterval = 10 * time.Millisecond
	})
	e.standardUsers()
	a := e.tok("alice")
	node := e.py("node")
	k1 := a.submit(task(map[string]any{"limits": map[string]any{"time": "1s"}}), nil)
	k2 := a.submit(task(nil), nil) // no time limit: DefaultTaskTime
	got := taskKeys(t, node.dequeue(2, map[string]any{"gpus": 0}, []string{}))
	assigned := clk.Now()
	if !slices.Equal(got, []string{k1, k2}) {
		t.Fatalf("got %v", got)
	}
	// margin + 2 × (1 s + 3 s) = 8.5 s, for both tasks of the dequeue.
	for _, k := range got {
		ti := taskInfo(t, e, k)
		if d := ti.LeaseExpire.Sub(ti.TimeAssign); d != 8500*time.Millisecond {
			t.Errorf("task %s lease = %v, want 8.5s", k, d)
		}
	}
	// 15 heartbeat leases later, and just before the lease ends, the node
	// still holds both: another node's dequeue (an expiry pass at that
	// time) gets nothing.
	for _, after := range []time.Duration{1500 * time.Millisecond, 8400 * time.Millisecond} {
		clk.Advance(after - clk.Now().Sub(assigned))
		if got := dequeue(t, e.tok("node2"), map[string]any{"concurency": 2}); len(got) != 0 {
			t.Errorf("%v after the dequeue node2 got %v", after, ids(got))
		}
		for _, k := range got {
			if ti := taskInfo(t, e, k); ti.AssigneeName != "node" || ti.Attempts != 1 {
				t.Errorf("%v after the dequeue, task %s: %+v", after, k, ti)
			}
		}
	}
	for _, k := range got {
		mustOK(t, node.resultPut(map[string]any{"id": k, "result": 0, "tags": []string{}}, map[string][]byte{"stdout": []byte(k)}))
	}
}

// One result per task, ever: who may post, replays, late results.
func TestOneResultPerTask(t *testing.T) {
	e := newEnv(t, shortLeases(200*time.Millisecond, 5))
	e.standardUsers()
	a, n1, n2 := e.tok("alice"), e.tok("node"), e.tok("node2")
	result := func(key string, code int, out string) map[string]any {
		return map[string]any{"id": key, "result": code, "files": map[string]any{"out": map[string]any{"reference": out}}}
	}

	t.Run("not assigned to the poster", func(t *testing.T) {
		key := a.submit(task(map[string]any{"requires": []string{"t1"}}), nil)
		dequeue(t, n1, map[string]any{"tags": []string{"t1"}})
		before := e.snapshot()
		ref := n2.upload([]byte("node2's output"))
		if r := n2.postJSON("/task/result/", result(key, 0, ref)); r.code != 403 {
			t.Errorf("result from a node that never held the task: %v", r)
		}
		after := e.snapshot()
		if after.rows["results"] != before.rows["results"] || after.rows["result_files"] != before.rows["result_files"] {
			t.Errorf("refused result changed rows: %v → %v", before, after)
		}
	})
	t.Run("replay is idempotent", func(t *testing.T) {
		key := a.submit(task(map[string]any{"requires": []string{"t2"}}), nil)
		dequeue(t, n1, map[string]any{"tags": []string{"t2"}})
		ref := n1.upload([]byte("output"))
		first := mustOK(t, n1.postJSON("/task/result/", result(key, 0, ref)))
		before := e.snapshot()
		// The same JSON again (its reference now belongs to alice).
		again := mustOK(t, n1.postJSON("/task/result/", result(key, 0, ref)))
		if string(again.body) != string(first.body) {
			t.Errorf("replay answered %s, first %s", again.body, first.body)
		}
		// A retrying foreman re-uploads its files: new references, same bytes.
		ref2 := n1.upload([]byte("output"))
		again = mustOK(t, n1.postJSON("/task/result/", result(key, 0, ref2)))
		if string(again.body) != string(first.body) {
			t.Errorf("replay with new references answered %s", again.body)
		}
		if after := e.snapshot(); after.rows["results"] != before.rows["results"] || after.rows["result_files"] != before.rows["result_files"] {
			t.Errorf("replays changed results: %v → %v", before, after)
		}
		// A different result is refused.
		ref3 := n1.upload([]byte("other output"))
		if r := n1.postJSON("/task/result/", result(key, 1, ref3)); r.status() != "FAIL" || r.message() != "task "+key+" already has a result" {
			t.Errorf("second, different result: %v", r)
		}
	})
	t.Run("late result while the task waits in the queue", func(t *testing.T) {
		key := a.submit(task(map[string]any{"requires": []string{"t3"}}), nil)
		dequeue(t, n1, map[string]any{"tags": []string{"t3"}, "heartbeat": true})
		waitFor(t, "the lease to lapse", func() bool { return taskInfo(t, e, key).State.String() == "unassigned" })
		ref := n1.upload([]byte("late"))
		mustOK(t, n1.postJSON("/task/result/", result(key, 0, ref)))
		if got := dequeue(t, n2, map[string]any{"tags": []string{"t3"}}); len(got) != 0 {
			t.Errorf("resolved task still queued: %v", ids(got))
		}
	})
	t.Run("late result while another node runs the task", func(t *testing.T) {
		key := a.submit(task(map[string]any{"requires": []string{"t4"}}), nil)
		dequeue(t, n1, map[string]any{"tags": []string{"t4"}, "heartbeat": true})
		if got := ids(dequeue(t, n2, map[string]any{"tags": []string{"t4"}, "wait": 5})); !slices.Equal(got, []string{key}) {
			t.Fatalf("node2 got %v", got)
		}
		ref := n1.upload([]byte("late but first"))
		mustOK(t, n1.postJSON("/task/result/", result(key, 0, ref)))
		hb := mustOK(t, n2.postJSON("/queue/heartbeat/", map[string]any{"tasks": []string{key}}))
		if lost := hb.json["lost"].([]any); len(lost) != 1 {
			t.Errorf("node2 should learn it lost the task: %v", hb.json)
		}
		ref2 := n2.upload([]byte("second"))
		if r := n2.postJSON("/task/result/", result(key, 0, ref2)); r.status() != "FAIL" {
			t.Errorf("node2's result after the late one: %v", r)
		}
		r := mustOK(t, a.do("GET", "/task/result/"+key+"/", nil))
		if f := r.json["result"].(map[string]any)["files"].(map[string]any)["out"].(map[string]any)["reference"]; f != ref {
			t.Errorf("stored result has %v, want node1's %s", f, ref)
		}
	})
	t.Run("late result after the new node posted", func(t *testing.T) {
		key := a.submit(task(map[string]any{"requires": []string{"t5"}}), nil)
		dequeue(t, n1, map[string]any{"tags": []string{"t5"}, "heartbeat": true})
		if got := ids(dequeue(t, n2, map[string]any{"tags": []string{"t5"}, "wait": 5})); !slices.Equal(got, []string{key}) {
			t.Fatalf("node2 got %v", got)
		}
		mustOK(t, n2.postJSON("/task/result/", result(key, 0, n2.upload([]byte("node2 first")))))
		if r := n1.postJSON("/task/result/", result(key, 0, n1.upload([]byte("node1 late")))); r.status() != "FAIL" {
			t.Errorf("late result after another node's: %v", r)
		}
	})
}

// A node whose lease lapsed while one of its long polls was open (a network
// cut: the node is gone, its connection not yet) must not get the task back
// through that old request, or it would lose it again and use up another
// attempt; a request it makes afterwards may take it.
func TestLapsedTaskNotHandedToTheOldLongPoll(t *testing.T) {
	e := newEnv(t, shortLeases(300*time.Millisecond, 3))
	e.standardUsers()
	a, n1 := e.tok("alice"), e.tok("node")
	key := a.submit(task(nil), nil)
	if got := ids(dequeue(t, n1, map[string]any{"heartbeat": true})); !slices.Equal(got, []string{key}) {
		t.Fatalf("got %v", got)
	}
	// The node's long poll, begun before the lapse, must come back empty.
	start := time.Now()
	if got := ids(dequeue(t, n1, map[string]any{"wait": 1.5, "heartbeat": true})); len(got) != 0 {
		t.Fatalf("the node's old long poll got %v back", got)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("the long poll ended after %v, before its wait", waited)
	}
	if ti := taskInfo(t, e, key); ti.Attempts != 1 || ti.AssigneeName != "" {
		t.Fatalf("after the lapse: %+v", ti)
	}
	// A request made after the lapse takes it.
	if got := ids(dequeue(t, n1, map[string]any{"heartbeat": true})); !slices.Equal(got, []string{key}) {
		t.Fatalf("a fresh request got %v", got)
	}
}
