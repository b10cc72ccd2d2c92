package hardening_test

// Workflows (internal/workflow): a careless or hostile user's
// kolejka_workflow.json, item lists and appended steps. A refusal names the
// step and the field and changes nothing. (The IDs are BF: BW is the
// worker's task folders'.)

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/workflow"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

func TestBadInputWorkflow(t *testing.T) {
	t.Run("BF01", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BF01", "workflow: a cycle (a after c, b after a, c after_failed b), and a step after itself",
			`refused naming the steps of the cycle in order and the step's field; nothing parsed`)
		w, err := workflow.Parse([]byte(`{"tasks": {"a": {"task": "a", "after": ["c"]}, "b": {"task": "b", "after_any": ["a"]},
			"c": {"task": "c", "after_failed": ["b"]}, "d": {"task": "d", "after": ["d"]}}}`), workflow.FileName)
		if err == nil {
			t.Fatal("accepted")
		}
		r.Observe("%v", err)
		if w != nil {
			t.Error("a refusal returned a workflow")
		}
		checkFragments(t, err.Error(), []string{`tasks["d"].after[0]: names the step itself`})
		// The self-reference is named first; the cycle is found once the
		// graph's edges all land.
		w, err = workflow.Parse([]byte(`{"tasks": {"a": {"task": "a", "after": ["c"]}, "b": {"task": "b", "after_any": ["a"]},
			"c": {"task": "c", "after_failed": ["b"]}}}`), workflow.FileName)
		if err == nil || w != nil {
			t.Fatal("a cycle accepted")
		}
		r.Observe("%v", err)
		checkFragments(t, err.Error(), []string{workflow.FileName, `tasks["a"]: a cycle: a → b → c → a`})
	})
	t.Run("BF02", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BF02", "workflow: a run that appends 1 000 items to itself again and again",
			"the append that would pass 10 000 instances is refused naming the bound; the run is unchanged and keeps going")
		w, err := workflow.Parse([]byte(`{"tasks": {"s0": {"task": "t"}}}`), workflow.FileName)
		if err != nil {
			t.Fatal(err)
		}
		run := workflow.NewRun(w)
		items := make([]string, 1000)
		for i := range items {
			items[i] = fmt.Sprint(i)
		}
		list, _ := json.Marshal(items)
		n := 1
		var before []byte
		for ; n < 100; n++ {
			prev := fmt.Sprintf("s%d", n-1)
			if err := run.Submitted(workflow.ID{Step: prev}, prev); err != nil {
				t.Fatal(err)
			}
			if _, err := run.Ended(prev, spec.StatusOK); err != nil {
				t.Fatal(err)
			}
			before, _ = json.Marshal(run)
			doc := fmt.Sprintf(`{"tasks": {"s%d": {"task": "t", "after": ["%s"]}, "f%d": {"task": "t", "items": %s}}}`, n, prev, n, list)
			if err = run.Append([]byte(doc), prev+":"+workflow.FileName); err != nil {
				break
			}
		}
		r.Observe("append %d refused: %v", n, err)
		if err == nil || n != 10 {
			t.Fatalf("append %d: %v", n, err)
		}
		checkFragments(t, err.Error(), []string{"s9:" + workflow.FileName, "tasks: the run would have 10011 instances", "more than 10000"})
		if after, _ := json.Marshal(run); !bytes.Equal(before, after) {
			t.Error("the refused append changed the run")
		}
		if run.State() != workflow.Running || len(run.Ready()) != 9*1000 {
			t.Errorf("the run is %s with %d ready", run.State(), len(run.Ready()))
		}
	})
	t.Run("BF03", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BF03", `workflow: inputs escaping their folders (DEST "../x", "/x"; PATH "../../etc/passwd", "/etc/passwd")`,
			"refused naming the step, the input and the path that leaves its folder; nothing parsed")
		_, err := workflow.Parse([]byte(`{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"], "inputs": {
			"../x": "a:out", "/x": "a:out", "ok": "a:../../etc/passwd", "ok2": "a:/etc/passwd", "ok3": "a:x/./../../y"}}}}`), workflow.FileName)
		if err == nil {
			t.Fatal("accepted")
		}
		r.Observe("%v", err)
		checkFragments(t, err.Error(), []string{
			`tasks["b"].inputs["../x"]: destination "../x" leaves the folder`,
			`tasks["b"].inputs["/x"]: destination "/x" is absolute`,
			`tasks["b"].inputs["ok"]: "a:../../etc/passwd": the path in the result: "../../etc/passwd" leaves the folder`,
			`tasks["b"].inputs["ok2"]: "a:/etc/passwd": the path in the result: "/etc/passwd" is absolute`,
			`tasks["b"].inputs["ok3"]`,
		})
	})
	t.Run("BF04", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BF04", "workflow: items that would move a file out of the folder (in items, in an items_from list, in rendering)",
			"refused naming the item and its field; a bad list fails the step with that reason; nothing rendered")
		_, err := workflow.Parse([]byte(`{"tasks": {"a": {"task": "a", "items": ["ok", "../x", "a/b", ".."]}}}`), workflow.FileName)
		if err == nil {
			t.Fatal("accepted")
		}
		r.Observe("%v", err)
		checkFragments(t, err.Error(), []string{`tasks["a"].items[1]: item "../x" would leave its folder`,
			`tasks["a"].items[2]: item "a/b"`, `tasks["a"].items[3]: item ".."`})

		w, err := workflow.Parse([]byte(`{"tasks": {"l": {"task": "l"}, "e": {"task": "e", "after": ["l"], "items_from": "l:items.json"}}}`), workflow.FileName)
		if err != nil {
			t.Fatal(err)
		}
		run := workflow.NewRun(w)
		if err := run.Submitted(workflow.ID{Step: "l"}, "k1"); err != nil {
			t.Fatal(err)
		}
		if _, err := run.Ended("k1", spec.StatusOK); err != nil {
			t.Fatal(err)
		}
		_, err = run.Expand("e", []byte(`["fine", "../../etc"]`))
		if err == nil {
			t.Fatal("the list was accepted")
		}
		r.Observe("%v", err)
		checkFragments(t, err.Error(), []string{"l:items.json", `tasks["e"].items_from[1]: item "../../etc" would leave its folder`})
		if st, reason := run.StepState("e"); st != workflow.Failed || !strings.Contains(reason, "../../etc") || len(run.Instances("e")) != 0 {
			t.Errorf("step e is %s (%q) with %d instances", st, reason, len(run.Instances("e")))
		}

		task, err := workflow.RenderTask([]byte(`{"image": "i", "args": ["true"], "files": {"{item}": {"path": "x"}}, "stdout": "{item}/out"}`), "e/"+spec.TaskFile, "..")
		if err == nil {
			t.Fatalf("rendered %+v", task)
		}
		r.Observe("%v", err)
		checkFragments(t, err.Error(), []string{`item ".."`, `params["item"]`, "leaves the folder"})
	})
}
