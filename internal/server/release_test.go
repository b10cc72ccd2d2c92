package server_test

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// A node hands back a task it will not finish: the task is queued again at
// once (a waiting node gets it without any lease running out), the hand-out
// is undone (attempts back to what they were), and the releasing node can
// no longer post a result for it.
func TestReleaseRequeuesWithoutAttempt(t *testing.T) {
	e := newEnv(t, shortLeases(time.Minute, 2))
	e.standardUsers()
	a, n1, n2 := e.tok("alice"), e.tok("node"), e.tok("node2")

	st := mustOK(t, n1.do("GET", "/settings/", nil))
	if !slices.Contains(strs(st.json["extensions"]), "release") {
		t.Fatalf("extensions %v lack release", st.json["extensions"])
	}

	first := a.submit(task(nil), nil)
	second := a.submit(task(nil), nil)
	if got := ids(dequeue(t, n1, map[string]any{"heartbeat": true, "concurency": 2})); !slices.Equal(got, []string{first, second}) {
		t.Fatalf("node took %v", got)
	}
	if ti := taskInfo(t, e, first); ti.Attempts != 1 {
		t.Fatalf("attempts after the hand-out: %+v", ti)
	}

	// node2 waits for work; the release wakes it long before the lease
	// (a minute) could have run out.
	type taken struct {
		ids []string
		at  time.Duration
	}
	const wait = 20 * time.Second
	got := make(chan taken, 1)
	start := time.Now()
	e.polling(func() {
		ts := dequeue(t, n2, map[string]any{"heartbeat": true, "wait": wait.Seconds()})
		got <- taken{ids(ts), time.Since(start)}
	})

	r := mustOK(t, n1.postJSON("/queue/release/", map[string]any{"tasks": []string{first, first, "0123456789abcdef0123456789abcdef"}}))
	if rel := strs(r.json["released"]); !slices.Equal(rel, []string{first}) {
		t.Errorf("released %v, want [%s] (a duplicate key is released once)", rel, first)
	}
	if lost := strs(r.json["lost"]); !slices.Equal(lost, []string{"0123456789abcdef0123456789abcdef"}) {
		t.Errorf("lost %v", lost)
	}
	w := <-got
	if !slices.Equal(w.ids, []string{first}) {
		t.Fatalf("node2 got %v, want the released task", w.ids)
	}
	if w.at >= wait {
		t.Errorf("node2 got the released task after %v, at its deadline: the release did not wake it", w.at)
	}
	// One hand-out undone, one made: attempts 1, not 2 (MaxAttempts is 2,
	// so a counted release would have made the next lapse final).
	if ti := taskInfo(t, e, first); ti.Attempts != 1 || ti.AssigneeName != "node2" {
		t.Errorf("after release and a new hand-out: %+v", ti)
	}

	// The releasing node is no longer a holder of the task: its result is
	// refused, the new holder's accepted.
	if ans := n1.postJSON("/task/result/", map[string]any{"id": first, "result": 0}); ans.code != http.StatusForbidden {
		t.Errorf("result from the node that released the task: %v", ans)
	}
	mustOK(t, n2.postJSON("/task/result/", map[string]any{"id": first, "result": 0}))

	// Releasing someone else's task, or a resolved one, changes nothing.
	r = mustOK(t, n2.postJSON("/queue/release/", map[string]any{"tasks": []string{second, first}}))
	if rel, lost := strs(r.json["released"]), strs(r.json["lost"]); len(rel) != 0 || !slices.Equal(lost, []string{second, first}) {
		t.Errorf("node2 releasing node's task and a resolved one: released %v lost %v", rel, lost)
	}
	if ti := taskInfo(t, e, second); ti.AssigneeName != "node" || ti.State.String() != "assigned" {
		t.Errorf("node's task after another node's release: %+v", ti)
	}
	if ti := taskInfo(t, e, first); ti.State.String() != "resolved" {
		t.Errorf("resolved task after a release: %+v", ti)
	}
}

// An empty list (or body) releases every task the node holds, and nothing
// of other nodes.
func TestReleaseAll(t *testing.T) {
	for _, body := range []string{"", "{}", `{"tasks": []}`} {
		e := newEnv(t)
		e.standardUsers()
		a, n1, n2 := e.tok("alice"), e.tok("node"), e.tok("node2")
		k1, k2, k3 := a.submit(task(nil), nil), a.submit(task(nil), nil), a.submit(task(nil), nil)
		if got := ids(dequeue(t, n1, map[string]any{"concurency": 2})); !slices.Equal(got, []string{k1, k2}) {
			t.Fatalf("node took %v", got)
		}
		if got := ids(dequeue(t, n2, map[string]any{})); !slices.Equal(got, []string{k3}) {
			t.Fatalf("node2 took %v", got)
		}
		r := mustOK(t, n1.do("POST", "/queue/release/", []byte(body)))
		if rel := strs(r.json["released"]); !slices.Equal(rel, []string{k1, k2}) {
			t.Errorf("body %q: released %v", body, rel)
		}
		for _, k := range []string{k1, k2} {
			if ti := taskInfo(t, e, k); ti.State.String() != "unassigned" || ti.Attempts != 0 {
				t.Errorf("body %q: released task %s: %s, %d attempts", body, k, ti.State, ti.Attempts)
			}
		}
		if ti := taskInfo(t, e, k3); ti.AssigneeName != "node2" {
			t.Errorf("body %q: node2's task %+v", body, ti)
		}
	}
}

// Only processors release; bad bodies are refused and change nothing.
func TestReleaseRefusals(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	a, n := e.tok("alice"), e.tok("node")
	k := a.submit(task(nil), nil)
	if got := ids(dequeue(t, n, map[string]any{})); !slices.Equal(got, []string{k}) {
		t.Fatalf("node took %v", got)
	}
	if ans := a.postJSON("/queue/release/", map[string]any{"tasks": []string{k}}); ans.code != http.StatusForbidden {
		t.Errorf("a client releasing: %v", ans)
	}
	if ans := n.do("POST", "/queue/release/", []byte(`{"task": ["x"]}`)); ans.status() != "FAIL" {
		t.Errorf("unknown key: %v", ans)
	}
	if ans := n.do("GET", "/queue/release/", nil); ans.code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v", ans)
	}
	if ti := taskInfo(t, e, k); ti.AssigneeName != "node" || ti.Attempts != 1 {
		t.Errorf("task after refused releases: %+v", ti)
	}
}
