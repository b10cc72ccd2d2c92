package tasktype_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/tasktype"
	"github.com/kolejka-go/kolejka/spec"
)

// issueExample is the type of issue 16, verbatim.
const issueExample = `{"image": "kolejka-test:latest", "args": ["sh", "run.sh", "{n}", "{src}"],
 "params": {"n": {"default": "10"}, "src": {"file": true}},
 "limits": {"time": "10s", "memory": "64M"}, "stdout": "out.txt",
 "files": {"run.sh": {"path": "run.sh"}}}`

func mustParse(t *testing.T, data string) *tasktype.Type {
	t.Helper()
	typ, err := tasktype.Parse([]byte(data), "type/kolejka_task.json")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return typ
}

// wantError checks that err holds a *spec.Error naming field whose problem
// contains problem.
func wantError(t *testing.T, err error, field, problem string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want %s: …%s…", field, problem)
	}
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	for _, e := range list {
		var se *spec.Error
		if errors.As(e, &se) && se.Field == field && strings.Contains(se.Problem, problem) {
			if se.File != "type/kolejka_task.json" {
				t.Errorf("error names file %q, want the type's file", se.File)
			}
			return
		}
	}
	t.Fatalf("got %v; want a *spec.Error for %s: …%s…", err, field, problem)
}

func TestIssueExample(t *testing.T) {
	typ := mustParse(t, issueExample)
	typ.Name, typ.Version = "compile", 3
	task, origin, err := typ.Render(nil, map[string]string{"src": "main.c"})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if want := []string{"sh", "run.sh", "10", "main.c"}; !reflect.DeepEqual(task.Args, want) {
		t.Errorf("args = %q, want %q", task.Args, want)
	}
	wantFiles := map[string]spec.File{"run.sh": {Path: "run.sh"}, "main.c": {Path: "main.c"}}
	if !reflect.DeepEqual(task.Files, wantFiles) {
		t.Errorf("files = %v, want %v", task.Files, wantFiles)
	}
	if task.Stdout != "out.txt" || task.Image != "kolejka-test:latest" {
		t.Errorf("stdout %q image %q", task.Stdout, task.Image)
	}
	if task.Limits.Memory == nil || *task.Limits.Memory != 64<<20 {
		t.Errorf("limits.memory = %v, want 64M", task.Limits.Memory)
	}
	wantOrigin := &tasktype.Origin{Type: "compile", Version: 3,
		Params: map[string]string{"n": "10"}, Files: map[string]string{"src": "main.c"}}
	if !reflect.DeepEqual(origin, wantOrigin) {
		t.Errorf("origin = %+v, want %+v", origin, wantOrigin)
	}
	// A plain Kolejka task: its canonical form has no key of the type's.
	data, err := task.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spec.ParseTask(data, "rendered"); err != nil {
		t.Errorf("rendered task is not a plain task: %v\n%s", err, data)
	}
	task, _, err = typ.Render(map[string]string{"n": "5"}, map[string]string{"src": "main.c"})
	if err != nil || task.Args[2] != "5" {
		t.Errorf("n=5: args %q, err %v", task.Args, err)
	}
}

func TestRenderPlaceholderLocations(t *testing.T) {
	typ := mustParse(t, `{"image": "i", "args": ["run", "--n={n}x{n}"],
		"environment": {"LEVEL": "{n}", "PLAIN": "p"},
		"stdin": "{in}", "stdout": "out-{n}.txt", "stderr": "err/{n}.txt",
		"files": {"data-{n}.txt": "d.txt", "fixed": null},
		"params": {"n": {}, "in": {"file": true}}}`)
	task, _, err := typ.Render(map[string]string{"n": "7"}, map[string]string{"in": "input.txt"})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	if want := []string{"run", "--n=7x7"}; !reflect.DeepEqual(task.Args, want) {
		t.Errorf("args = %q, want %q", task.Args, want)
	}
	if want := map[string]string{"LEVEL": "7", "PLAIN": "p"}; !reflect.DeepEqual(task.Environment, want) {
		t.Errorf("environment = %v, want %v", task.Environment, want)
	}
	if task.Stdin != "input.txt" || task.Stdout != "out-7.txt" || task.Stderr != "err/7.txt" {
		t.Errorf("stdin %q stdout %q stderr %q", task.Stdin, task.Stdout, task.Stderr)
	}
	wantFiles := map[string]spec.File{"data-7.txt": {Path: "d.txt"}, "fixed": {Path: "fixed"}, "input.txt": {Path: "input.txt"}}
	if !reflect.DeepEqual(task.Files, wantFiles) {
		t.Errorf("files = %v, want %v", task.Files, wantFiles)
	}
}

func TestRenderEscapesAndValuesAreLiteral(t *testing.T) {
	typ := mustParse(t, `{"image": "i", "args": ["{{n}}", "{{{n}}}", "}}", "{n}"], "params": {"n": {"default": "d"}}}`)
	for _, tc := range []struct{ value, want string }{
		{"d", "d"},
		{"{m}", "{m}"},                 // braces in a value are not placeholders
		{"{{", "{{"},                   // nor escapes
		{"a b; rm -rf / `x` $(y)", ""}, // one argument, not shell-parsed
		{`", "x": "y`, ""},             // JSON metacharacters stay characters
	} {
		values := map[string]string{"n": tc.value}
		if tc.value == "d" {
			values = nil // the default
		}
		task, _, err := typ.Render(values, nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.value, err)
		}
		want := []string{"{n}", "{" + tc.value + "}", "}", tc.value}
		if !reflect.DeepEqual(task.Args, want) {
			t.Errorf("%q: args = %q, want %q", tc.value, task.Args, want)
		}
	}
}

// Render builds Go values, never JSON text: a value that would close a JSON
// string and open a key is an argument like any other, and the task written
// and read back has the same four arguments and no new key.
func TestRenderNoJSONInjection(t *testing.T) {
	typ := mustParse(t, `{"image": "i", "args": ["echo", "{v}"], "params": {"v": {}}}`)
	inject := `x"], "image": "evil", "callback_url": "http://evil/", "args": ["`
	task, _, err := typ.Render(map[string]string{"v": inject}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := task.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := spec.ParseTask(data, "rendered")
	if err != nil {
		t.Fatal(err)
	}
	if back.Image != "i" || back.CallbackURL != "" || !reflect.DeepEqual(back.Args, []string{"echo", inject}) {
		t.Errorf("injected: image %q callback %q args %q", back.Image, back.CallbackURL, back.Args)
	}
}

// The rendered task is the caller's: changing it does not change the type.
func TestRenderReturnsACopy(t *testing.T) {
	typ := mustParse(t, issueExample)
	task, _, err := typ.Render(nil, map[string]string{"src": "a.c"})
	if err != nil {
		t.Fatal(err)
	}
	task.Args[0] = "changed"
	task.Files["run.sh"] = spec.File{Path: "other"}
	*task.Limits.Memory = 1
	again, _, err := typ.Render(nil, map[string]string{"src": "a.c"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Args[0] != "sh" || again.Files["run.sh"].Path != "run.sh" || *again.Limits.Memory != 64<<20 {
		t.Errorf("the type changed: %q %v %d", again.Args, again.Files, *again.Limits.Memory)
	}
}

func TestParsePassEnv(t *testing.T) {
	typ := mustParse(t, `{"image": "i", "args": ["a"], "pass_env": ["LANG", "HOME"]}`)
	if want := []string{"HOME", "LANG"}; !reflect.DeepEqual(typ.PassEnv(), want) {
		t.Errorf("PassEnv = %q, want %q", typ.PassEnv(), want)
	}
	_, origin, err := typ.Render(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"HOME", "LANG"}; !reflect.DeepEqual(origin.PassEnv, want) {
		t.Errorf("origin.PassEnv = %q, want %q", origin.PassEnv, want)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, data, field, problem string
	}{
		{"unknown placeholder", `{"image": "i", "args": ["{x}"], "params": {"n": {}}}`, "args[0]", "placeholder {x} names no parameter (declared: n)"},
		{"unknown placeholder in environment", `{"image": "i", "args": ["a"], "environment": {"E": "{x}"}}`, `environment["E"]`, "placeholder {x} names no parameter"},
		{"unknown placeholder in stdout", `{"image": "i", "args": ["a"], "stdout": "{x}"}`, "stdout", "names no parameter"},
		{"unknown placeholder in a file name", `{"image": "i", "args": ["a"], "files": {"{x}": "f"}}`, `files["{x}"]`, "names no parameter"},
		{"unclosed brace", `{"image": "i", "args": ["{n"], "params": {"n": {}}}`, "args[0]", `with no "}"`},
		{"lone closing brace", `{"image": "i", "args": ["a}b"]}`, "args[0]", `"}" with no "{"`},
		{"placeholder not a name", `{"image": "i", "args": ["{1x}"]}`, "args[0]", "placeholder {1x}"},
		{"empty placeholder", `{"image": "i", "args": ["{}"]}`, "args[0]", "placeholder {}"},
		{"parameter name not an identifier", `{"image": "i", "args": ["a"], "params": {"a-b": {}}}`, `params["a-b"]`, "not a parameter name"},
		{"parameter repeated", `{"image": "i", "args": ["a"], "params": {"n": {}, "n": {}}}`, `params["n"]`, "more than once"},
		{"params not an object", `{"image": "i", "args": ["a"], "params": ["n"]}`, "params", "got a list"},
		{"parameter not an object", `{"image": "i", "args": ["a"], "params": {"n": "10"}}`, `params["n"]`, "got a string"},
		{"default not a string", `{"image": "i", "args": ["a"], "params": {"n": {"default": 10}}}`, `params["n"].default`, "expected a string, got the number 10"},
		{"file not a boolean", `{"image": "i", "args": ["a"], "params": {"n": {"file": "yes"}}}`, `params["n"].file`, "expected true or false"},
		{"unknown parameter key", `{"image": "i", "args": ["a"], "params": {"n": {"dflt": "1"}}}`, `params["n"].dflt`, "unknown key"},
		{"file parameter with a default", `{"image": "i", "args": ["a"], "params": {"n": {"file": true, "default": "x"}}}`, `params["n"].default`, "a file parameter has no default"},
		{"pass_env not a list", `{"image": "i", "args": ["a"], "pass_env": "HOME"}`, "pass_env", "expected a list"},
		{"pass_env not a name", `{"image": "i", "args": ["a"], "pass_env": ["A=B"]}`, "pass_env[0]", "not a variable name"},
		{"pass_env repeated", `{"image": "i", "args": ["a"], "pass_env": ["A", "A"]}`, "pass_env[1]", "more than once"},
		{"default escapes the folder", `{"image": "i", "args": ["a"], "stdout": "{p}/out", "params": {"p": {"default": "../x"}}}`, `params["p"]`, `stdout: "../x/out" leaves`},
		{"file parameter clashes with a file of the type", `{"image": "i", "args": ["a"], "files": {"{{src}}": "f"}, "params": {"src": {"file": true}}}`, `params["src"]`, "clashes with the type's file"},
		{"not a task: no image", `{"args": ["a"]}`, "image", "missing"},
		{"not a task: unknown key", `{"image": "i", "args": ["a"], "parms": {}}`, "parms", "unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tasktype.Parse([]byte(tc.data), "type/kolejka_task.json")
			wantError(t, err, tc.field, tc.problem)
		})
	}
}

func TestRenderRefuses(t *testing.T) {
	typ := mustParse(t, `{"image": "i", "args": ["run", "{n}", "{m}"],
		"environment": {"E": "{m}"},
		"stdin": "{src}", "stdout": "{out}/out.txt", "stderr": "{err}",
		"files": {"run.sh": null, "data/{d}.txt": "d.txt", "{e}.txt": "e.txt"},
		"params": {"n": {}, "m": {"default": "m"}, "src": {"file": true},
			"out": {"default": "o"}, "err": {"default": "e.txt"},
			"d": {"default": "d"}, "e": {"default": "e"}}}`)
	ok := map[string]string{"src": "in.txt"}
	for _, tc := range []struct {
		name          string
		values, files map[string]string
		field         string
		problem       string
	}{
		{"missing required value", nil, ok, `params["n"]`, "missing (required: it has no default)"},
		{"missing file", map[string]string{"n": "1"}, nil, `params["src"]`, "missing (a file parameter"},
		{"unknown value", map[string]string{"n": "1", "x": "1"}, ok, `params["x"]`, "unknown parameter (declared: d, e, err, m, n, out, src)"},
		{"unknown file", map[string]string{"n": "1"}, map[string]string{"src": "a", "y": "b"}, `params["y"]`, "unknown parameter"},
		{"file given as a value", map[string]string{"n": "1", "src": "a"}, ok, `params["src"]`, "is a file parameter: give it a file, not a value"},
		{"value given as a file", nil, map[string]string{"src": "a", "n": "b"}, `params["n"]`, "is a value parameter: give it a value, not a file"},
		{"value not UTF-8", map[string]string{"n": "\xff"}, ok, `params["n"]`, "not valid UTF-8"},
		{"output leaves the folder", map[string]string{"n": "1", "out": ".."}, ok, `params["out"]`, `stdout: "../out.txt" leaves`},
		{"absolute output", map[string]string{"n": "1", "err": "/etc/passwd"}, ok, `params["err"]`, "stderr: \"/etc/passwd\" is absolute"},
		{"output not a clean name", map[string]string{"n": "1", "out": "a//b"}, ok, `params["out"]`, "not in clean form"},
		{"file name leaves the folder", map[string]string{"n": "1", "d": "../../x"}, ok, `params["d"]`, `files["data/../../x.txt"]`},
		{"file parameter's file leaves the folder", map[string]string{"n": "1"}, map[string]string{"src": "../x"}, `params["src"]`, `leaves`},
		{"file parameter's file is the folder", map[string]string{"n": "1"}, map[string]string{"src": "."}, `params["src"]`, "the folder itself"},
		{"file parameter's file is empty", map[string]string{"n": "1"}, map[string]string{"src": ""}, `params["src"]`, "empty"},
		{"file parameter clashes with a file", map[string]string{"n": "1"}, map[string]string{"src": "run.sh"}, `params["src"]`, `file "run.sh" clashes with the type's file "run.sh"`},
		{"two files become one", map[string]string{"n": "1", "e": "data/d"}, ok, `params["e"]`, `both become "data/d.txt"`},
		{"file clashes with kolejka_task.json", map[string]string{"n": "1"}, map[string]string{"src": "kolejka_task.json"}, `params["src"]`, "clashes with kolejka_task.json"},
		{"NUL in an argument", map[string]string{"n": "a\x00b"}, ok, `params["n"]`, "args[1]: contains a NUL byte"},
		{"NUL in the environment", map[string]string{"n": "1", "m": "\x00"}, ok, `params["m"]`, `environment["E"]: value contains a NUL byte`},
		{"outputs clash", map[string]string{"n": "1", "out": "x", "err": "x/out.txt/e"}, ok, `params["err"]`, "clashes with stdout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task, origin, err := typ.Render(tc.values, tc.files)
			wantError(t, err, tc.field, tc.problem)
			if task != nil || origin != nil {
				t.Errorf("refused, but returned %v, %v", task, origin)
			}
		})
	}
	if _, _, err := typ.Render(map[string]string{"n": "1"}, ok); err != nil {
		t.Fatalf("the valid baseline is refused: %v", err)
	}
}
