package hardening_test

// The task lifecycle (cancel) over real HTTP to a real server on a real
// SQLite file: a cancel by someone else, of a finished task, and a node's
// result for a task cancelled under it are refused, and nothing changes:
// every row of every table, the blob files and the temp files are the
// same before and after.

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/kolejka-go/kolejka/tests/hardening"
)

func TestBadInputLifecycle(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	alice, bob, node := s.bearer("alice"), s.bearer("bob"), s.bearer("node")
	aliceSession := s.sessionOf(t, "alice")
	submit := func(requires string) string {
		a := alice.mustPost(t, "/task/task/", `{"image": "kolejka-test:latest", "args": ["true"], "requires": ["`+requires+`"]}`)
		return a.json["task"].(map[string]any)["id"].(string)
	}
	take := func(tag string) {
		a := node.mustPost(t, "/queue/dequeue/", `{"concurency": 1, "limits": {}, "tags": ["`+tag+`"]}`)
		if n := len(a.json["tasks"].([]any)); n != 1 {
			t.Fatalf("dequeue %s: %d tasks", tag, n)
		}
	}
	stateOfTask := func(key string) string {
		a := alice.do(t, "GET", "/task/task/"+key+"/", nil)
		st, _ := a.json["state"].(string)
		return st
	}
	// unchanged runs fn and fails if the server's state differs after it.
	unchanged := func(t *testing.T, r *hardening.Row, fn func()) {
		t.Helper()
		before := s.state(t)
		fn()
		if after := s.state(t); !after.equal(before) {
			t.Errorf("the server changed (tables %v): %v → %v", before.changed(after), before, after)
		}
		r.Observe("server %s unchanged", s.state(t))
	}

	t.Run("BL01", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BL01", "lifecycle: cancel by someone who is neither the owner nor a manager",
			"403 with the reason, for another client, a node and via the owner's session without CSRF; the task keeps running; nothing changed")
		running := submit("bc01")
		take("bc01")
		unchanged(t, r, func() {
			for name, c := range map[string]*apiClient{"bob": bob, "node": node} {
				a := c.do(t, "POST", "/task/task/"+running+"/cancel/", nil)
				r.Observe("%s: %v", name, a)
				if a.code != 403 {
					t.Errorf("cancel by %s: %v, want 403", name, a)
				}
				checkFragments(t, a.text(), []string{"owner or a manager"})
			}
			a := aliceSession.do(t, "POST", "/task/task/"+running+"/cancel/", nil, header("X-CSRFToken", ""))
			r.Observe("owner's session without a CSRF token: %v", a)
			if a.code != 403 {
				t.Errorf("a cross-site cancel: %v, want 403", a)
			}
		})
		if st := stateOfTask(running); st != "running" {
			t.Errorf("the task is %s after the refused cancels", st)
		}
	})

	t.Run("BL02", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BL02", "lifecycle: cancel of a finished task",
			"FAIL saying a finished task cannot be cancelled; its result intact byte for byte; nothing changed")
		done := submit("bc02")
		take("bc02")
		node.mustPost(t, "/task/result/", fmt.Sprintf(`{"id": %q, "result": 0, "status": "OK"}`, done))
		result := alice.do(t, "GET", "/task/result/"+done+"/", nil)
		unchanged(t, r, func() {
			a := alice.do(t, "POST", "/task/task/"+done+"/cancel/", nil)
			r.Observe("%v", a)
			if a.code != 200 || a.status() != "FAIL" {
				t.Errorf("got %v, want 200 FAIL", a)
			}
			checkFragments(t, a.text(), []string{done, "finished", "cannot be cancelled"})
		})
		if after := alice.do(t, "GET", "/task/result/"+done+"/", nil); !bytes.Equal(after.body, result.body) {
			t.Errorf("the result changed: %s → %s", result.body, after.body)
		}
		if st := stateOfTask(done); st != "done" {
			t.Errorf("the task is %s", st)
		}
	})

	t.Run("BL03", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BL03", "lifecycle: a node posts a result for a task cancelled while it ran",
			"FAIL saying the task was cancelled; no result stored, the task stays cancelled; nothing changed")
		cancelled := submit("bc03")
		take("bc03")
		alice.mustPost(t, "/task/task/"+cancelled+"/cancel/", "")
		outRef, _ := node.upload(t, []byte("late output\n"))
		unchanged(t, r, func() {
			for _, body := range []string{
				fmt.Sprintf(`{"id": %q, "result": 0, "status": "OK", "files": {"out": {"reference": %q}}}`, cancelled, outRef),
				fmt.Sprintf(`{"id": %q, "status": "SE"}`, cancelled),
			} {
				a := node.do(t, "POST", "/task/result/", []byte(body))
				r.Observe("%v", a)
				if a.code != 200 || a.status() != "FAIL" {
					t.Errorf("got %v, want 200 FAIL", a)
				}
				checkFragments(t, a.text(), []string{cancelled, "was cancelled"})
			}
		})
		if st := stateOfTask(cancelled); st != "cancelled" {
			t.Errorf("the task is %s", st)
		}
		a := alice.do(t, "GET", "/task/result/"+cancelled+"/", nil)
		r.Observe("its result: %v", a)
		if a.status() != "FAIL" || a.json["cancelled"] != true {
			t.Errorf("the cancelled task's result: %v", a)
		}
	})
}
