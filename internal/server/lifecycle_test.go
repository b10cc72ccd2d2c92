package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The task lifecycle over HTTP: listing, cancel, clone, and a client
// waiting for a result that will never come.

func listKeys(t *testing.T, a answer) []string {
	t.Helper()
	mustOK(t, a)
	var out []string
	for _, x := range a.json["tasks"].([]any) {
		out = append(out, x.(map[string]any)["key"].(string))
	}
	return out
}

func TestTaskList(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	alice, bob, ivy := e.tok("alice"), e.tok("bob"), e.tok("ivy")
	var keys []string
	for range 5 {
		keys = append(keys, alice.submit(simpleTask(), nil))
	}
	bobs := bob.submit(simpleTask(), nil)

	got := listKeys(t, alice.do("GET", "/task/list/", nil))
	if want := []string{keys[4], keys[3], keys[2], keys[1], keys[0]}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("alice's list %v, want hers newest first %v", got, want)
	}
	// Pages: the answer's next is the before= of the next page; the last
	// page has none.
	var paged []string
	before := ""
	for range 4 {
		a := mustOK(t, alice.do("GET", "/task/list/?limit=2&before="+before, nil))
		paged = append(paged, listKeys(t, a)...)
		before = a.json["next"].(string)
		if before == "" {
			break
		}
	}
	if strings.Join(paged, ",") != strings.Join(got, ",") {
		t.Errorf("paged %v, want %v", paged, got)
	}
	if a := alice.do("GET", "/task/list/?all=1", nil); a.code != 403 {
		t.Errorf("all=1 by a client: %v, want 403", a)
	}
	all := listKeys(t, ivy.do("GET", "/task/list/?all=1&limit=2", nil))
	if len(all) != 2 || all[0] != bobs || all[1] != keys[4] {
		t.Errorf("all=1 by an inspector: %v", all)
	}
	for q, want := range map[string]string{
		"state=finished": `state: "finished"`,
		"limit=0":        `limit: "0"`,
		"limit=x":        `limit: "x"`,
		"limit=1001":     `limit: "1001"`,
		"queue=../x":     "queue:",
		"all=yes":        `all: "yes"`,
		"before=" + bobs: "", // another user's key is a cursor like any: nothing of bob's shows
		"before=0123456789abcdef0123456789abcdef": "before: no task",
	} {
		a := alice.do("GET", "/task/list/?"+q, nil)
		if want == "" {
			if got := listKeys(t, a); len(got) != 5 {
				t.Errorf("%s: %v", q, got)
			}
			continue
		}
		if a.status() != "FAIL" || !strings.Contains(a.message(), want) {
			t.Errorf("%s: %v, want a FAIL naming %s", q, a, want)
		}
	}
	e.tok("max").do("POST", "/task/task/"+keys[1]+"/cancel/", nil)
	if got := listKeys(t, alice.do("GET", "/task/list/?state=cancelled", nil)); len(got) != 1 || got[0] != keys[1] {
		t.Errorf("state=cancelled: %v", got)
	}
	if got := listKeys(t, alice.do("GET", "/task/list/?state=queued&limit=10", nil)); len(got) != 4 {
		t.Errorf("state=queued: %v", got)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	alice, bob, node, max := e.tok("alice"), e.tok("bob"), e.tok("node"), e.tok("max")
	queued := alice.submit(map[string]any{"image": "busybox:latest", "args": []string{"true"}, "requires": []string{"later"}}, nil)
	running := alice.submit(simpleTask(), nil)
	if got := taskKeys(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1, "limits": map[string]any{}, "tags": []string{}})); len(got) != 1 || got[0] != running {
		t.Fatalf("dequeue: %v", got)
	}

	// Not the owner's nor a manager's: refused, nothing changes.
	before, beforeTask := e.snapshot(), alice.do("GET", "/task/task/"+running+"/", nil).body
	for _, who := range []string{"bob", "node", "ivy"} {
		if a := e.tok(who).do("POST", "/task/task/"+running+"/cancel/", nil); a.code != 403 {
			t.Errorf("cancel by %s: %v, want 403", who, a)
		}
	}
	if a := alice.do("GET", "/task/task/"+running+"/cancel/", nil); a.code != 405 {
		t.Errorf("GET cancel: %v, want 405", a)
	}
	if a := alice.do("POST", "/task/task/0123456789abcdef0123456789abcdef/cancel/", nil); a.code != 404 {
		t.Errorf("cancel of an unknown task: %v, want 404", a)
	}
	if after, afterTask := e.snapshot(), alice.do("GET", "/task/task/"+running+"/", nil).body; fmt.Sprint(after) != fmt.Sprint(before) || string(afterTask) != string(beforeTask) {
		t.Errorf("refused cancels changed the server: %v → %v, task %s → %s", before, after, beforeTask, afterTask)
	}

	// The running task: the node's heartbeat loses it, its result is refused.
	a := mustOK(t, alice.do("POST", "/task/task/"+running+"/cancel/", nil))
	if a.json["was"] != "running" || a.json["state"] != "cancelled" {
		t.Errorf("cancel answer %v", a)
	}
	hb := mustOK(t, node.postJSON("/queue/heartbeat/", map[string]any{"tasks": []string{running}}))
	if lost := fmt.Sprint(hb.json["lost"]); lost != "["+running+"]" {
		t.Errorf("heartbeat after cancel: lost %s", lost)
	}
	res := node.postJSON("/task/result/", map[string]any{"id": running, "result": 0, "status": "OK"})
	if res.status() != "FAIL" || !strings.Contains(res.message(), "was cancelled") {
		t.Errorf("result for a cancelled task: %v", res)
	}
	info := mustOK(t, alice.do("GET", "/task/task/"+running+"/", nil)).json
	if info["state"] != "cancelled" || info["resolved"] != false || info["node"] != "node" || info["assignee"] != nil || info["time_finish"] == nil {
		t.Errorf("the cancelled running task: %v", info)
	}
	r := alice.do("GET", "/task/result/"+running+"/", nil)
	if r.status() != "FAIL" || r.json["cancelled"] != true || r.message() != "Task "+running+" was cancelled" {
		t.Errorf("result of a cancelled task: %v", r)
	}

	// The queued one, by a manager: never handed out; again: no-op.
	mustOK(t, max.do("POST", "/task/task/"+queued+"/cancel/", nil))
	if got := taskKeys(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1, "limits": map[string]any{}, "tags": []string{"later"}})); len(got) != 0 {
		t.Errorf("a cancelled task was handed out: %v", got)
	}
	again := mustOK(t, alice.do("POST", "/task/task/"+queued+"/cancel/", nil))
	if again.json["was"] != "cancelled" {
		t.Errorf("second cancel: %v", again)
	}

	// A finished task: refused, its result intact.
	done := bob.submit(simpleTask(), nil)
	taskKeys(t, node.postJSON("/queue/dequeue/", map[string]any{"concurency": 1, "limits": map[string]any{}, "tags": []string{}}))
	posted := mustOK(t, node.postJSON("/task/result/", map[string]any{"id": done, "result": 0, "status": "OK"}))
	f := bob.do("POST", "/task/task/"+done+"/cancel/", nil)
	if f.status() != "FAIL" || !strings.Contains(f.message(), "finished") {
		t.Errorf("cancel of a finished task: %v", f)
	}
	if got := mustOK(t, bob.do("GET", "/task/result/"+done+"/", nil)); fmt.Sprint(got.json["result"]) != fmt.Sprint(posted.json["result"]) {
		t.Errorf("result after the refused cancel: %v", got)
	}

	// The counts: two cancelled tasks are neither work left nor resolved.
	st := mustOK(t, max.do("GET", "/queue/stats/", nil)).json
	for k, want := range map[string]float64{"task_count": 3, "task_cancelled_count": 2, "task_resolved_count": 1, "task_unresolved_count": 0, "task_unassigned_count": 0} {
		if st[k] != want {
			t.Errorf("stats %s = %v, want %v (%v)", k, st[k], want, st)
		}
	}
	if m := string(max.do("GET", "/metrics", nil).body); !strings.Contains(m, `kolejka_tasks{state="cancelled"} 2`) {
		t.Errorf("/metrics lacks the cancelled count:\n%s", m)
	}
}

// A client long-polling for a result stops as soon as the task is
// cancelled, with the cancelled FAIL, not when its wait runs out.
func TestCancelWakesWaiters(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	alice := e.tok("alice")
	key := alice.submit(simpleTask(), nil)
	got := make(chan answer, 1)
	e.polling(func() { got <- alice.do("GET", "/task/result/"+key+"/?wait=60", nil) })
	cancelled := time.Now()
	mustOK(t, alice.do("POST", "/task/task/"+key+"/cancel/", nil))
	select {
	case a := <-got:
		if a.status() != "FAIL" || a.json["cancelled"] != true {
			t.Errorf("the waiter got %v", a)
		}
		t.Logf("the waiter answered %v after the cancel", time.Since(cancelled))
	case <-time.After(30 * time.Second):
		t.Fatal("the waiter still waits 30 s after the cancel (its wait is 60 s)")
	}
}

func TestClone(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	alice, bob, max := e.tok("alice"), e.tok("bob"), e.tok("max")
	task := map[string]any{"image": "busybox:latest", "args": []string{"cat", "in"}, "stdout": "out", "limits": map[string]any{"time": "5s"}}
	key := alice.submit(task, map[string][]byte{"in": []byte("input\n")})
	orig := mustOK(t, alice.do("GET", "/task/task/"+key+"/", nil)).json["task"].(map[string]any)

	if a := bob.do("POST", "/task/task/"+key+"/clone/", nil); a.code != 403 {
		t.Errorf("clone by another user: %v", a)
	}
	if a := e.tok("node").do("POST", "/task/task/"+key+"/clone/", nil); a.code != 403 {
		t.Errorf("clone by a node: %v", a)
	}
	if a := max.do("POST", "/task/task/"+key+"/clone/", nil); a.code != 403 {
		t.Errorf("clone by a manager who is no client: %v", a)
	}
	before := e.count("tasks")
	a := mustOK(t, alice.do("POST", "/task/task/"+key+"/clone/", nil))
	clone := a.json["task"].(map[string]any)
	if clone["id"] == key || len(clone["id"].(string)) != 32 {
		t.Errorf("clone's key %v", clone["id"])
	}
	delete(clone, "id")
	delete(orig, "id")
	if fmt.Sprint(clone) != fmt.Sprint(orig) {
		t.Errorf("clone %v\n differs from %v", clone, orig)
	}
	if n := e.count("tasks"); n != before+1 {
		t.Errorf("%d tasks after a clone, want %d", n, before+1)
	}
	// A cancelled task clones too (the point of cloning it).
	mustOK(t, alice.do("POST", "/task/task/"+key+"/cancel/", nil))
	mustOK(t, alice.do("POST", "/task/task/"+key+"/clone/", nil))
}
