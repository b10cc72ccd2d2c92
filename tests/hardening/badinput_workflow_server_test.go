package hardening_test

// Workflow runs through the server's HTTP API (/workflow/, extension
// "workflows"), over real HTTP to a real server on a real SQLite file: a
// bad put, or a use of another user's run or files, is refused naming the
// step and the field, and nothing changes — every row of every table, the
// blob files and the temp files are the same before and after.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/tests/hardening"
)

func TestBadInputWorkflowServer(t *testing.T) {
	t.Parallel()
	s := newAPIServer(t, nil)
	alice, bob := s.bearer("alice"), s.bearer("bob")
	task := `{` + typeBody + `, "args": ["true"]}`
	put := func(c *apiClient, wf, tasks string) answer {
		body, _ := json.Marshal(map[string]any{"workflow": json.RawMessage(wf), "tasks": json.RawMessage(tasks)})
		return c.do(t, "POST", "/workflow/", body)
	}
	// Bob's run, with a step that ran: its key and its task's key are what
	// alice must not reach.
	a := put(bob, `{"tasks": {"b": {"task": "b"}}}`, `{"b": `+task+`}`)
	if a.status() != "OK" {
		t.Fatalf("bob's put: %v", a)
	}
	bobRun := a.json["key"].(string)
	bobRef, _ := bob.upload(t, []byte("bob's file\n"))
	check := func(t *testing.T, r *hardening.Row, send func() answer, code int, status string, want []string) {
		t.Helper()
		unchanged(t, s, r, send, code, status, want)
	}

	t.Run("BF05", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BF05", "workflow (server): another user's reference among a task step's files",
			`FAIL naming tasks["a"].files["f"].reference and whose it is; no run, no task stored`)
		check(t, r, func() answer {
			return put(alice, `{"tasks": {"a": {"task": "a"}}}`,
				`{"a": {`+typeBody+`, "args": ["true"], "files": {"f": {"reference": "`+bobRef+`"}}}}`)
		}, 200, "FAIL", []string{`tasks["a"].files["f"].reference`, "belongs to another user"})
	})
	t.Run("BF06", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BF06", "workflow (server): another user's run key as the step of an input and of items_from",
			"FAIL naming the input and items_from fields: the key names no step of this run; nothing stored")
		check(t, r, func() answer {
			return put(alice, `{"tasks": {"a": {"task": "a", "inputs": {"x": "`+bobRun+`:out.txt"}, "items_from": "`+bobRun+`:list.json"}}}`,
				`{"a": `+task+`}`)
		}, 200, "FAIL", []string{`tasks["a"].inputs["x"]`, `tasks["a"].items_from`, bobRun})
	})
	t.Run("BF07", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BF07", "workflow (server): a cycle a → b → c → a",
			"FAIL naming the cycle in order; nothing stored")
		check(t, r, func() answer {
			return put(alice, `{"tasks": {"a": {"task": "t", "after": ["c"]}, "b": {"task": "t", "after": ["a"]}, "c": {"task": "t", "after_any": ["b"]}}}`,
				`{"t": `+task+`}`)
		}, 200, "FAIL", []string{`tasks["a"]: a cycle: a → b → c → a`})
	})
	t.Run("BF08", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BF08", "workflow (server): bad steps: a fanned task with an unknown placeholder, an input path leaving the folder, a step without its task",
			"FAIL naming each step and field at once; nothing stored")
		check(t, r, func() answer {
			return put(alice, `{"tasks": {"a": {"task": "a", "items": ["1", "2"]}, "b": {"task": "b", "after": ["a"], "inputs": {"x": "a:../../etc/passwd"}}}}`,
				`{"a": {`+typeBody+`, "args": ["{nope}"]}, "b": `+task+`}`)
		}, 200, "FAIL", []string{`tasks["b"].inputs["x"]`, "leaves the folder"})
		check(t, r, func() answer {
			return put(alice, `{"tasks": {"a": {"task": "a", "items": ["1", "2"]}, "b": {"task": "b", "after": ["a"]}}}`,
				`{"a": {`+typeBody+`, "args": ["{nope}"]}}`)
		}, 200, "FAIL", []string{`tasks["a"]`, "{nope}", `tasks["b"].task`, "no kolejka_task.json"})
	})
	t.Run("BF09", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BF09", "workflow (server): another user's run read, cancelled, retried",
			"403 each, naming why; the run and its tasks unchanged")
		for _, send := range []func() answer{
			func() answer { return alice.do(t, "GET", "/workflow/"+bobRun+"/", nil) },
			func() answer { return alice.do(t, "POST", "/workflow/"+bobRun+"/cancel/", nil) },
			func() answer { return alice.do(t, "POST", "/workflow/"+bobRun+"/retry/", nil) },
		} {
			check(t, r, send, 403, "", []string{"another user"})
		}
	})

	// A hostile step: its task's output is a kolejka_workflow.json that
	// adds steps to the run. The server reads it with the rules of a put
	// and the step owner's rights, never more.
	node := s.bearer("node")
	instance := func(t *testing.T, shown answer, step string) map[string]any {
		t.Helper()
		w, _ := shown.json["workflow"].(map[string]any)
		steps, _ := w["steps"].([]any)
		for _, x := range steps {
			st := x.(map[string]any)
			if st["name"] == step {
				if ins, _ := st["instances"].([]any); len(ins) == 1 {
					return ins[0].(map[string]any)
				}
			}
		}
		t.Fatalf("no step %s in %v", step, shown)
		return nil
	}
	hostile := func(t *testing.T, tag string, files map[string]string) (run string, shown answer) {
		t.Helper()
		a := put(alice, `{"tasks": {"gen": {"task": "gen"}}}`, `{"gen": {`+typeBody+`, "args": ["true"], "requires": ["`+tag+`"]}}`)
		if a.status() != "OK" {
			t.Fatalf("alice's put: %v", a)
		}
		run = a.json["key"].(string)
		gen := fmt.Sprint(instance(t, alice.do(t, "GET", "/workflow/"+run+"/", nil), "gen")["task_key"])
		// The node takes gen's task (and whatever else waits: bob's task
		// needs no tag).
		d := node.mustPost(t, "/queue/dequeue/", `{"concurency": 10, "limits": {}, "tags": ["`+tag+`"]}`)
		if !strings.Contains(d.text(), gen) {
			t.Fatalf("dequeue %s did not hand out gen's task %s: %v", tag, gen, d)
		}
		refs := map[string]any{}
		for name, content := range files {
			ref, _ := node.upload(t, []byte(content))
			refs[name] = map[string]string{"reference": ref}
		}
		body, _ := json.Marshal(map[string]any{"id": gen, "result": 0, "status": "OK", "files": refs})
		node.mustPost(t, "/task/result/", string(body))
		return run, alice.do(t, "GET", "/workflow/"+run+"/", nil)
	}
	t.Run("BF10", func(t *testing.T) {
		r := caseOf(t, hardening.Hostile, "BF10", "workflow (server): a step's output adds a step whose task names another user's reference",
			"the added step ends SE naming the reference and whose it is; no task is made with it; bob's file stays his")
		_, shown := hostile(t, "bf10", map[string]string{
			"kolejka_workflow.json": `{"tasks": {"steal": {"task": "x", "after": ["gen"]}}}`,
			"x/kolejka_task.json":   `{` + typeBody + `, "args": ["cat", "f"], "files": {"f": {"reference": "` + bobRef + `"}}}`,
		})
		steal := instance(t, shown, "steal")
		r.Observe("steal: %v", steal)
		if steal["state"] != "failed" || steal["status"] != "SE" {
			t.Errorf("the added step: %v, want failed SE", steal)
		}
		checkFragments(t, fmt.Sprint(steal["reason"]), []string{bobRef, "belongs to another user"})
		if d := node.mustPost(t, "/queue/dequeue/", `{"concurency": 10, "limits": {}, "tags": ["bf10"]}`); len(d.json["tasks"].([]any)) != 0 {
			t.Errorf("a task was made: %v", d)
		}
	})
	t.Run("BF11", func(t *testing.T) {
		r := caseOf(t, hardening.Hostile, "BF11", "workflow (server): a step's output adds steps in a cycle, or a step that exists",
			"the append is refused whole, naming the cycle or the name; the step that wrote it ends SE; nothing is added")
		for _, wf := range []string{
			`{"tasks": {"p": {"task": "x", "after": ["q"]}, "q": {"task": "x", "after": ["p"]}}}`,
			`{"tasks": {"gen": {"task": "x"}}}`,
		} {
			_, shown := hostile(t, "bf11", map[string]string{
				"kolejka_workflow.json": wf,
				"x/kolejka_task.json":   `{` + typeBody + `, "args": ["true"]}`,
			})
			gen := instance(t, shown, "gen")
			r.Observe("gen: %v", gen)
			if gen["state"] != "failed" || gen["status"] != "SE" {
				t.Errorf("the appending step: %v, want failed SE", gen)
			}
			w := shown.json["workflow"].(map[string]any)
			if steps := w["steps"].([]any); len(steps) != 1 || w["state"] != "failed" {
				t.Errorf("the run after a refused append: %v", w)
			}
		}
	})
}
