package tasktype_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/kolejka-go/kolejka/internal/tasktype"
	"github.com/kolejka-go/kolejka/spec"
)

// FuzzRender builds a type whose templated fields and parameter values come
// from the fuzzer. Parse and Render may refuse anything, but never panic,
// and a task Render accepts always passes spec's validation and survives
// being written and read back unchanged.
func FuzzRender(f *testing.F) {
	f.Add("{n}", "out-{n}.txt", "data/{n}", "10", "main.c")
	f.Add("{{n}}", "{n}", "{n}.in", "../x", "../y")
	f.Add("--x={n}", "a/{n}", "b", `", "x": "`, "kolejka_task.json")
	f.Add("}", "{", "{n", "\x00", "")
	f.Add("{src}", "o", "{n}/f", "a b", "a/b")
	f.Fuzz(func(t *testing.T, arg, stdout, fileKey, value, fileName string) {
		typeJSON, err := json.Marshal(map[string]any{
			"image":       "i",
			"args":        []string{"run", arg},
			"environment": map[string]string{"V": arg},
			"stdout":      stdout,
			"files":       map[string]any{fileKey: "f"},
			"params": map[string]any{
				"n":   map[string]any{"default": "d"},
				"src": map[string]any{"file": true},
			},
		})
		if err != nil {
			return // not UTF-8: json.Marshal would change it
		}
		typ, err := tasktype.Parse(typeJSON, "type.json")
		if err != nil {
			return
		}
		task, origin, err := typ.Render(map[string]string{"n": value}, map[string]string{"src": fileName})
		if err != nil {
			if task != nil || origin != nil {
				t.Fatalf("refused (%v) but returned a task", err)
			}
			return
		}
		if err := task.Validate(spec.Local); err != nil {
			t.Fatalf("rendered task fails validation: %v", err)
		}
		if len(task.Args) != 2 {
			t.Fatalf("args split: %q", task.Args)
		}
		if _, ok := task.Files[fileName]; !ok {
			t.Fatalf("the file parameter's file %q is not among the files %v", fileName, task.Files)
		}
		data, err := task.Encode()
		if err != nil {
			t.Fatalf("rendered task cannot be written: %v", err)
		}
		back, err := spec.ParseTask(data, "rendered")
		if err != nil {
			t.Fatalf("rendered task cannot be read back: %v\n%s", err, data)
		}
		if !reflect.DeepEqual(back.Args, task.Args) || !reflect.DeepEqual(back.Files, task.Files) || back.Stdout != task.Stdout {
			t.Fatalf("changed on the way back: %+v vs %+v", back, task)
		}
	})
}
