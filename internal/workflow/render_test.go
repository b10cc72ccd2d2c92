package workflow

import (
	"maps"
	"strings"
	"testing"
)

const taskDoc = `{"image": "kolejka-test:latest", "limits": {"time": "10s", "memory": "64M"},
	"args": ["run", "--case={item}", "{{literal}}"], "environment": {"CASE": "{item}"},
	"stdout": "out-{item}.txt", "files": {"in-{item}.txt": {"path": "cases/{item}.in"}, "run.sh": {"path": "run.sh"}}}`

func TestRenderTask(t *testing.T) {
	task, err := RenderTask([]byte(taskDoc), "t/kolejka_task.json", "7")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(task.Args, " "); got != "run --case=7 {literal}" {
		t.Errorf("args %q", got)
	}
	if task.Environment["CASE"] != "7" || task.Stdout != "out-7.txt" {
		t.Errorf("environment %v stdout %q", task.Environment, task.Stdout)
	}
	if _, ok := task.Files["in-7.txt"]; !ok || len(task.Files) != 2 {
		t.Errorf("files %v", task.Files)
	}
	// Without an item the task is read as it is: braces are plain text.
	task, err = RenderTask([]byte(taskDoc), "t/kolejka_task.json", "")
	if err != nil {
		t.Fatal(err)
	}
	if task.Args[1] != "--case={item}" || task.Stdout != "out-{item}.txt" {
		t.Errorf("changed without an item: %q %q", task.Args, task.Stdout)
	}
	// An empty task object takes the parameter too.
	if _, err := RenderTask([]byte(` { } `), "k.json", "x"); err == nil || strings.Contains(err.Error(), "invalid character") {
		t.Errorf("an empty task: %v", err) // refused by spec (no image…), not by a broken patch
	}
}

func TestRenderTaskRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, doc, item string
		want            []string
	}{
		{"an item moving the output out", `{"image": "i", "args": ["true"], "stdout": "{item}/out"}`, "..",
			[]string{`item ".."`, `params["item"]`, `stdout`, `leaves the folder`}},
		{"an item moving a file out", `{"image": "i", "args": ["true"], "files": {"{item}": {"path": "x"}}}`, "../../etc/x",
			[]string{`item "../../etc/x"`, `files["../../etc/x"]`, `leaves the folder`}},
		{"another placeholder", `{"image": "i", "args": ["{case}"]}`, "1",
			[]string{`args[0]`, `placeholder {case} names no parameter`}},
		{"a lone brace", `{"image": "i", "args": ["{"]}`, "1", []string{`args[0]`, `"{{" for a literal brace`}},
		{"not an object", `[]`, "1", []string{"t.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task, err := RenderTask([]byte(tc.doc), "t.json", tc.item)
			if err == nil {
				t.Fatalf("rendered %+v", task)
			}
			if task != nil {
				t.Error("a refusal returned a task")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

func TestParams(t *testing.T) {
	w, err := Parse([]byte(`{"tasks": {
		"once": {"type": "t", "params": {"a": "{item}", "b": "x"}},
		"each": {"type": "t", "params": {"a": "case-{item}", "b": "{{x}}", "c": "plain"}, "items": ["1", "{2}"]},
		"bad":  {"type": "t", "params": {"a": "{n}", "b": "}"}, "items": ["1"]}}}`), FileName)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRun(w)
	for _, tc := range []struct {
		id   ID
		want map[string]string
	}{
		{ID{"once", 0}, map[string]string{"a": "{item}", "b": "x"}},
		{ID{"each", 0}, map[string]string{"a": "case-1", "b": "{x}", "c": "plain"}},
		{ID{"each", 1}, map[string]string{"a": "case-{2}", "b": "{x}", "c": "plain"}},
	} {
		got, err := r.Params(tc.id)
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.id, got, err, tc.want)
		}
	}
	_, err = r.Params(ID{"bad", 0})
	for _, want := range []string{`tasks["bad"].params["a"]: "{n}": the only placeholder is {item}`, `tasks["bad"].params["b"]: "}" has a "}" with no "{"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if _, err := r.Params(ID{"nope", 0}); err == nil {
		t.Error("params of no instance")
	}
}
