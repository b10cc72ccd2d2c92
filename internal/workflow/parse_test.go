package workflow

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/spec"
)

func TestParseGood(t *testing.T) {
	w, err := Parse([]byte(`{"tasks": {
		"compile": {"task": "compile"},
		"test":    {"task": "test", "after": ["compile"], "items": ["1", "2", "3"],
		            "inputs": {"prog": "compile:a.out", "data/x": "compile:out/x"},
		            "retry": {"attempts": 3, "on": ["RE", "TLE"]}},
		"report":  {"type": "report", "params": {"title": "run"}, "files": {"logo": "img/logo.png"},
		            "after_any": ["test"], "inputs": {"results": "test:out.txt"}},
		"cleanup": {"task": "cleanup", "after_any": ["report"], "inputs": {"r": "compile:a.out"}}
	}, "on_failure": "abort", "final": "cleanup"}`), FileName)
	if err != nil {
		t.Fatal(err)
	}
	if w.OnFailure != Abort || w.Final != "cleanup" || len(w.Steps) != 4 {
		t.Fatalf("got %+v", w)
	}
	test := w.Steps["test"]
	if test.Task != "test" || len(test.Items) != 3 || test.Inputs["prog"] != (Source{"compile", "a.out"}) ||
		test.Retry.Attempts != 3 || len(test.Retry.On) != 2 || !test.Fanned() {
		t.Errorf("test step: %+v", test)
	}
	rep := w.Steps["report"]
	if rep.Type != "report" || rep.Params["title"] != "run" || rep.Files["logo"] != "img/logo.png" || rep.Fanned() {
		t.Errorf("report step: %+v", rep)
	}
}

// Each refusal names the step and the field; nothing is returned.
func TestParseRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string // fragments of the error
	}{
		{"not an object", `[1]`, []string{"expected a JSON object"}},
		{"no tasks", `{}`, []string{"tasks: missing"}},
		{"empty tasks", `{"tasks": {}}`, []string{"tasks: no steps"}},
		{"unknown top key", `{"tasks": {"a": {"task": "a"}}, "steps": 1}`, []string{"steps: unknown key"}},
		{"bad on_failure", `{"tasks": {"a": {"task": "a"}}, "on_failure": "stop"}`, []string{`on_failure: "stop" is not a choice`}},
		{"on_failure type", `{"tasks": {"a": {"task": "a"}}, "on_failure": 1}`, []string{`on_failure: expected a string, got the number 1`}},
		{"bad step name", `{"tasks": {"a b": {"task": "a"}}}`, []string{`tasks["a b"]: "a b" is not a name`}},
		{"duplicate step", `{"tasks": {"a": {"task": "a"}, "a": {"task": "b"}}}`, []string{`tasks["a"]: step given more than once`}},
		{"step not object", `{"tasks": {"a": "a"}}`, []string{`tasks["a"]: expected an object, got a string`}},
		{"neither", `{"tasks": {"a": {}}}`, []string{`tasks["a"]: neither task`}},
		{"both", `{"tasks": {"a": {"task": "a", "type": "t"}}}`, []string{`tasks["a"]: both task and type`}},
		{"params on a task", `{"tasks": {"a": {"task": "a", "params": {"x": "1"}}}}`, []string{`tasks["a"]: params and files belong to a type step`}},
		{"unknown step key", `{"tasks": {"a": {"task": "a", "depends": ["b"]}}}`, []string{`tasks["a"].depends: unknown key`}},
		{"task absolute", `{"tasks": {"a": {"task": "/etc"}}}`, []string{`tasks["a"].task: "/etc" is absolute`}},
		{"task escapes", `{"tasks": {"a": {"task": "x/../../y"}}}`, []string{`tasks["a"].task: "x/../../y" leaves the folder`}},
		{"task dot", `{"tasks": {"a": {"task": "."}}}`, []string{`tasks["a"].task: "." is the workflow folder`}},
		{"type name", `{"tasks": {"a": {"type": "../t"}}}`, []string{`tasks["a"].type: "../t" is not a name`}},
		{"param not string", `{"tasks": {"a": {"type": "t", "params": {"n": 5}}}}`, []string{`tasks["a"].params["n"]: expected a string, got the number 5`}},
		{"file escapes", `{"tasks": {"a": {"type": "t", "files": {"src": "../main.c"}}}}`, []string{`tasks["a"].files["src"]: "../main.c" leaves the folder`}},
		{"after not list", `{"tasks": {"a": {"task": "a", "after": "b"}}}`, []string{`tasks["a"].after: expected a list of strings, got a string`}},
		{"after item type", `{"tasks": {"a": {"task": "a", "after": [1]}}}`, []string{`tasks["a"].after[0]: expected a string`}},
		{"unknown step", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after_any": ["a", "c"]}}}`, []string{`tasks["b"].after_any[1]: "c" names no step (steps: a, b)`}},
		{"self", `{"tasks": {"a": {"task": "a", "after_failed": ["a"]}}}`, []string{`tasks["a"].after_failed[0]: names the step itself`}},
		{"repeated dep", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a", "a"]}}}`, []string{`tasks["b"].after[1]: "a" is listed more than once`}},
		{"input dest absolute", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"], "inputs": {"/x": "a:o"}}}}`, []string{`tasks["b"].inputs["/x"]: destination "/x" is absolute`}},
		{"input dest escapes", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"], "inputs": {"../x": "a:o"}}}}`, []string{`tasks["b"].inputs["../x"]: destination "../x" leaves the folder`}},
		{"input path escapes", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"], "inputs": {"x": "a:../../etc/passwd"}}}}`, []string{`tasks["b"].inputs["x"]: "a:../../etc/passwd": the path in the result: "../../etc/passwd" leaves the folder`}},
		{"input path absolute", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"], "inputs": {"x": "a:/etc/passwd"}}}}`, []string{`tasks["b"].inputs["x"]: "a:/etc/passwd": the path in the result: "/etc/passwd" is absolute`}},
		{"input no colon", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"], "inputs": {"x": "a"}}}}`, []string{`tasks["b"].inputs["x"]: "a" is not STEP:PATH`}},
		{"input over the task file", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"], "inputs": {"kolejka_task.json": "a:o"}}}}`, []string{`tasks["b"].inputs["kolejka_task.json"]: destination would replace`}},
		{"input inside input", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"], "inputs": {"d": "a:o", "d/x": "a:p"}}}}`, []string{`tasks["b"].inputs["d/x"]: lies inside input "d"`}},
		{"input not ancestor", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "inputs": {"x": "a:o"}}}}`, []string{`tasks["b"].inputs["x"]: step "a" is not among the steps "b" runs after`}},
		{"input unknown step", `{"tasks": {"b": {"task": "b", "inputs": {"x": "z:o"}}}}`, []string{`tasks["b"].inputs["x"]: "z" names no step`}},
		{"input from itself", `{"tasks": {"b": {"task": "b", "inputs": {"x": "b:o"}}}}`, []string{`tasks["b"].inputs["x"]: names the step itself`}},
		{"items and items_from", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"], "items": ["1"], "items_from": "a:l.json"}}}`, []string{`tasks["b"].items_from: given with items`}},
		{"empty items", `{"tasks": {"a": {"task": "a", "items": []}}}`, []string{`tasks["a"].items: an empty list`}},
		{"item escapes", `{"tasks": {"a": {"task": "a", "items": ["ok", "../x"]}}}`, []string{`tasks["a"].items[1]: item "../x" would leave its folder`}},
		{"item repeated", `{"tasks": {"a": {"task": "a", "items": ["1", "1"]}}}`, []string{`tasks["a"].items[1]: item "1" is listed more than once`}},
		{"item empty", `{"tasks": {"a": {"task": "a", "items": [""]}}}`, []string{`tasks["a"].items[0]: an empty item`}},
		{"items_from not ancestor", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "items_from": "a:l.json"}}}`, []string{`tasks["b"].items_from: step "a" is not among`}},
		{"items_from fanned", `{"tasks": {"a": {"task": "a", "items": ["1"]}, "b": {"task": "b", "after": ["a"], "items_from": "a:l.json"}}}`, []string{`tasks["b"].items_from: step "a" runs once per item`}},
		{"items_from bad", `{"tasks": {"b": {"task": "b", "items_from": "a"}}}`, []string{`tasks["b"].items_from: "a" is not STEP:PATH`}},
		{"retry attempts zero", `{"tasks": {"a": {"task": "a", "retry": {"attempts": 0}}}}`, []string{`tasks["a"].retry.attempts: expected a whole number from 1 to 100, got the number 0`}},
		{"retry attempts string", `{"tasks": {"a": {"task": "a", "retry": {"attempts": "2"}}}}`, []string{`tasks["a"].retry.attempts: expected a whole number from 1 to 100, got a string`}},
		{"retry missing attempts", `{"tasks": {"a": {"task": "a", "retry": {"on": ["RE"]}}}}`, []string{`tasks["a"].retry.attempts: missing`}},
		{"retry on OK", `{"tasks": {"a": {"task": "a", "retry": {"attempts": 2, "on": ["RE", "OK", "WA"]}}}}`, []string{`tasks["a"].retry.on[1]: "OK" is not a failure status`, `tasks["a"].retry.on[2]: "WA" is not a failure status`}},
		{"retry unknown", `{"tasks": {"a": {"task": "a", "retry": {"attempts": 2, "delay": "1s"}}}}`, []string{`tasks["a"].retry.delay: unknown key`}},
		{"final unknown", `{"tasks": {"a": {"task": "a"}}, "final": "z"}`, []string{`final: "z" names no step`}},
		{"final depended on", `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"]}}, "final": "a"}`, []string{`tasks["b"].after[0]: "a" is the final step`}},
		{"cycle of two", `{"tasks": {"a": {"task": "a", "after": ["b"]}, "b": {"task": "b", "after_any": ["a"]}}}`, []string{`tasks["a"]: a cycle: a → b → a`}},
		{"cycle of three", `{"tasks": {"a": {"task": "a", "after": ["c"]}, "b": {"task": "b", "after": ["a"]}, "c": {"task": "c", "after_failed": ["b"]}, "d": {"task": "d"}}}`, []string{`a cycle: a → b → c → a`}},
		{"all at once", `{"tasks": {"a": {"task": "/a", "after": ["z"], "items": [1]}, "b": {"type": 3}}, "x": 1}`,
			[]string{`tasks["a"].task: "/a" is absolute`, `tasks["a"].items[0]: expected a string`, `tasks["b"].type: expected a string`, `x: unknown key`, `tasks["a"].after[0]: "z" names no step`}},
		{"trailing data", `{"tasks": {"a": {"task": "a"}}} {}`, []string{"data after the object"}},
		{"not UTF-8", "{\"tasks\": {\"a\": {\"task\": \"\xff\"}}}", []string{"not valid UTF-8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Parse([]byte(tc.doc), FileName)
			if err == nil {
				t.Fatalf("accepted: %+v", w)
			}
			if w != nil {
				t.Error("a refusal returned a workflow")
			}
			var se *spec.Error
			if !errors.As(err, &se) || se.File != FileName {
				t.Errorf("not a *spec.Error of %s: %#v", FileName, err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}

// Ancestors are reached through every list, transitively.
func TestParseAncestors(t *testing.T) {
	_, err := Parse([]byte(`{"tasks": {
		"a": {"task": "a"}, "b": {"task": "b", "after_failed": ["a"]}, "c": {"task": "c", "after_any": ["b"]},
		"d": {"task": "d", "after": ["c"], "inputs": {"x": "a:o", "y": "b:o", "z": "c:o"}, "items_from": "a:l"}}}`), FileName)
	if err != nil {
		t.Fatal(err)
	}
	// A sibling is not an ancestor, nor is a descendant.
	_, err = Parse([]byte(`{"tasks": {
		"a": {"task": "a"}, "b": {"task": "b", "after": ["a"]}, "c": {"task": "c", "after": ["a"], "inputs": {"x": "b:o"}},
		"d": {"task": "d", "after": ["c"]}, "e": {"task": "e", "inputs": {"y": "d:o"}, "after": ["a"]}}}`), FileName)
	for _, want := range []string{`tasks["c"].inputs["x"]: step "b" is not among`, `tasks["e"].inputs["y"]: step "d" is not among`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// The final step may read any step: it runs after all of them.
	if _, err := Parse([]byte(`{"tasks": {"a": {"task": "a"}, "f": {"task": "f", "inputs": {"x": "a:o"}}}, "final": "f"}`), FileName); err != nil {
		t.Error(err)
	}
}

func TestParseBounds(t *testing.T) {
	doc := func(steps, items int) []byte {
		var b strings.Builder
		b.WriteString(`{"tasks": {`)
		for i := range steps {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"s%d": {"task": "t"`, i)
			if items > 0 {
				b.WriteString(`, "items": [`)
				for j := range items {
					if j > 0 {
						b.WriteString(",")
					}
					fmt.Fprintf(&b, `"%d"`, j)
				}
				b.WriteString("]")
			}
			b.WriteString("}")
		}
		b.WriteString("}}")
		return []byte(b.String())
	}
	if _, err := Parse(doc(MaxSteps, 0), FileName); err != nil {
		t.Errorf("%d steps: %v", MaxSteps, err)
	}
	if _, err := Parse(doc(MaxSteps+1, 0), FileName); err == nil || !strings.Contains(err.Error(), "more than 1000 steps") {
		t.Errorf("%d steps: %v", MaxSteps+1, err)
	}
	if _, err := Parse(doc(100, 100), FileName); err != nil {
		t.Errorf("100 × 100 instances: %v", err)
	}
	if _, err := Parse(doc(101, 100), FileName); err == nil || !strings.Contains(err.Error(), "10100 instances") {
		t.Errorf("101 × 100 instances: %v", err)
	}
}

func TestSourceText(t *testing.T) {
	var s Source
	if err := s.UnmarshalText([]byte("a:b/c")); err != nil || s != (Source{"a", "b/c"}) {
		t.Errorf("%+v %v", s, err)
	}
	if err := s.UnmarshalText([]byte("a:../c")); err == nil {
		t.Error("accepted a:../c")
	}
	if b, _ := (Source{"a", "b"}).MarshalText(); string(b) != "a:b" {
		t.Errorf("%s", b)
	}
}
