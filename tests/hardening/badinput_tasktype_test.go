package hardening_test

// Task types (internal/tasktype): a careless or hostile user's parameters
// and types. A refusal names the parameter and the problem and renders
// nothing; an accepted value stays where its placeholder is, never more.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/tasktype"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

const typeBody = `"image": "kolejka-test:latest", "limits": {"time": "10s", "memory": "64M"}`

func TestBadInputTaskTypes(t *testing.T) {
	typ := func(t *testing.T, doc string) *tasktype.Type {
		t.Helper()
		ty, err := tasktype.Parse([]byte(doc), "kolejka_task.json")
		if err != nil {
			t.Fatalf("the type itself: %v", err)
		}
		return ty
	}
	refused := func(t *testing.T, r *hardening.Row, ty *tasktype.Type, values, files map[string]string, want []string) {
		t.Helper()
		task, origin, err := ty.Render(values, files)
		if err == nil {
			t.Fatalf("rendered %+v, want a refusal", task.Args)
		}
		r.Observe("%v", err)
		if task != nil || origin != nil {
			t.Error("a refused render returned a task")
		}
		checkFragments(t, err.Error(), want)
	}

	t.Run("BT01", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BT01", "type: a parameter that moves an output out of the folder ({p} = ../x)",
			`refused naming params["p"] and the field it made leave the folder; nothing rendered`)
		ty := typ(t, `{`+typeBody+`, "args": ["true"], "stdout": "{p}/out", "params": {"p": {"default": "o"}}}`)
		refused(t, r, ty, map[string]string{"p": "../x"}, nil, []string{`params["p"]`, `stdout`, `leaves the folder`})
	})
	t.Run("BT02", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BT02", "type: a file parameter naming a file outside the folder",
			`refused naming params["src"]; nothing rendered`)
		ty := typ(t, `{`+typeBody+`, "args": ["cat", "{src}"], "params": {"src": {"file": true}}}`)
		refused(t, r, ty, nil, map[string]string{"src": "/etc/shadow"}, []string{`params["src"]`})
	})
	t.Run("BT03", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BT03", "type: a value that tries to add arguments or JSON keys",
			"the value stays inside its one argument, as literal text, also after the task is written and read back")
		ty := typ(t, `{`+typeBody+`, "args": ["echo", "{v}"], "params": {"v": {}}}`)
		evil := `x" , "--rm", "-rf" ], "image": "evil", "args": ["sh`
		task, _, err := ty.Render(map[string]string{"v": evil + " --flag $(id)"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := spec.WriteTask(dir, task); err != nil {
			t.Fatal(err)
		}
		back, err := spec.LoadTask(dir)
		if err != nil {
			t.Fatal(err)
		}
		r.Observe("args %q, image %q", back.Args, back.Image)
		if len(back.Args) != 2 || back.Args[1] != evil+" --flag $(id)" || back.Image != "kolejka-test:latest" {
			t.Errorf("the value escaped its argument: args %q image %q", back.Args, back.Image)
		}
	})
	t.Run("BT04", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BT04", "type: a placeholder naming no parameter, a name that is not one",
			"the type is refused naming the placeholder and the parameter")
		_, err := tasktype.Parse([]byte(`{`+typeBody+`, "args": ["{nope}"], "params": {"../x": {}}}`), "kolejka_task.json")
		if err == nil {
			t.Fatal("the type was accepted")
		}
		r.Observe("%v", err)
		checkFragments(t, err.Error(), []string{"nope", `"../x"`})
	})
	t.Run("BT05", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BT05", "type: 10 000 unknown parameters",
			"refused with a bounded error: the first problems and a count of the rest")
		ty := typ(t, `{`+typeBody+`, "args": ["true"], "params": {}}`)
		values := map[string]string{}
		for i := range 10000 {
			values[fmt.Sprintf("p%05d", i)] = "x"
		}
		_, _, err := ty.Render(values, nil)
		if err == nil {
			t.Fatal("rendered")
		}
		msg := err.Error()
		r.Observe("%d bytes, %d problems named", len(msg), strings.Count(msg, "unknown parameter"))
		if n := strings.Count(msg, "unknown parameter"); n > 50 || !strings.Contains(msg, "more problems") {
			t.Errorf("%d problems named, want at most 50 and a count of the rest", n)
		}
	})
}
