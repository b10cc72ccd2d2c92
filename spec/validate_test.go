package spec

import (
	"errors"
	"strings"
	"testing"
)

// A valid local task every bad case below breaks in one place.
const goodTask = `{
  "image": "alpine",
  "args": ["sh", "-c", "cat in.txt"],
  "files": {"in.txt": "data/in.txt", "lib/x": {"path": "x", "reference": "abc"}},
  "stdin": "in.txt",
  "stdout": "out",
  "stderr": "err",
  "limits": {"memory": "64M", "time": "1s", "cpus": 1}
}`

// findError looks for an *Error in err (possibly joined) with exactly the
// field and a problem containing problem.
func findError(err error, field, problem string) *Error {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	for _, e := range list {
		var pe *Error
		if errors.As(e, &pe) && pe.Field == field && strings.Contains(pe.Problem, problem) {
			return pe
		}
	}
	return nil
}

func assertProblem(t *testing.T, err error, file, field, problem string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %s: %s: %s", file, field, problem)
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	got := findError(err, field, problem)
	if got == nil {
		t.Fatalf("error %q has no problem at field %q containing %q", err, field, problem)
	}
	if got.File != file {
		t.Errorf("error %q names file %q; want %q", got, got.File, file)
	}
	msg := err.Error()
	for _, part := range []string{file, field, problem} {
		if !strings.Contains(msg, part) {
			t.Errorf("error message %q does not mention %q", msg, part)
		}
	}
}

func TestGoodTaskIsValid(t *testing.T) {
	task, err := ParseTask([]byte(goodTask), TaskFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Validate(Local); err != nil {
		t.Fatalf("Validate(Local): %v", err)
	}
	// The server needs references, which in.txt lacks: the modes differ.
	assertProblem(t, task.Validate(Server), TaskFile, `files["in.txt"].reference`, "missing")
}

func TestBadTasks(t *testing.T) {
	const f = TaskFile
	for _, tc := range []struct {
		name           string
		json           string // replaces the whole task when it does not start with "+"
		edit           func(string) string
		mode           ValidateMode
		field, problem string
	}{
		{name: "unknown key", json: `{"image": "a", "args": ["x"], "imag": "b"}`, field: "imag", problem: `unknown key (did you mean "image"?)`},
		{name: "unknown key far from any", json: `{"image": "a", "args": ["x"], "colour": "b"}`, field: "colour", problem: "unknown key (known keys: args, callback_url"},
		{name: "typo in limits", edit: replace(`"memory"`, `"memmory"`), field: "limits.memmory", problem: `unknown key (did you mean "memory"?)`},
		{name: "typo gpu", edit: replace(`"cpus": 1`, `"gpu": 1`), field: "limits.gpu", problem: `did you mean "gpus"?`},
		{name: "bad unit", edit: replace(`"64M"`, `"64MiB"`), field: "limits.memory", problem: `"64MiB" is not a size: unknown unit "i"`},
		{name: "bad time unit", edit: replace(`"1s"`, `"1h"`), field: "limits.time", problem: `unknown unit "h"`},
		{name: "bool maybe", edit: replace(`"cpus": 1`, `"network": "maybe"`), field: "limits.network", problem: "not a boolean"},
		{name: "exclusive maybe", edit: replace(`"stdin"`, `"exclusive": "maybe", "stdin"`), field: "exclusive", problem: "not a boolean"},
		{name: "negative memory", edit: replace(`"64M"`, `"-64M"`), field: "limits.memory", problem: "negative"},
		{name: "negative memory number", edit: replace(`"64M"`, `-5`), field: "limits.memory", problem: "-5 is not a size: negative"},
		{name: "fractional cpus", edit: replace(`"cpus": 1`, `"cpus": 1.5`), field: "limits.cpus", problem: "not a whole number"},
		{name: "fractional cpus string", edit: replace(`"cpus": 1`, `"cpus": "1.5"`), field: "limits.cpus", problem: "not a whole number"},
		{name: "cpus of wrong type", edit: replace(`"cpus": 1`, `"cpus": [1]`), field: "limits.cpus", problem: "expected a whole number, got a list"},
		{name: "limits not an object", edit: replace(`"limits": {"memory": "64M", "time": "1s", "cpus": 1}`, `"limits": "64M"`), field: "limits", problem: "expected an object, got a string"},
		{name: "dotdot name", edit: replace(`"in.txt": "data/in.txt"`, `"in.txt": "data/in.txt", "../x": "a"`), field: `files["../x"]`, problem: `leaves the folder ("..")`},
		{name: "dotdot path", edit: replace(`"data/in.txt"`, `"a/../../x"`), field: `files["in.txt"].path`, problem: "leaves the folder"},
		{name: "absolute path", edit: replace(`"data/in.txt"`, `"/etc/passwd"`), field: `files["in.txt"].path`, problem: "absolute"},
		{name: "absolute name", edit: replace(`"in.txt": "data/in.txt"`, `"in.txt": "data/in.txt", "/etc/passwd": "a"`), field: `files["/etc/passwd"]`, problem: "absolute"},
		{name: "name is the task file", edit: replace(`"lib/x"`, `"kolejka_task.json"`), field: `files["kolejka_task.json"]`, problem: "clashes with kolejka_task.json"},
		{name: "name under the task file", edit: replace(`"lib/x"`, `"kolejka_task.json/x"`), field: `files["kolejka_task.json/x"]`, problem: "clashes with kolejka_task.json"},
		{name: "unclean name", edit: replace(`"lib/x"`, `"./lib//x"`), field: `files["./lib//x"]`, problem: `not in clean form (write "lib/x")`},
		{name: "empty name", edit: replace(`"lib/x"`, `""`), field: `files[""]`, problem: "empty"},
		{name: "NUL in name", edit: replace(`"lib/x"`, `"li\u0000b"`), field: `files["li\x00b"]`, problem: "NUL"},
		{name: "file and folder", edit: replace(`"lib/x"`, `"in.txt/x"`), field: `files["in.txt/x"]`, problem: `clashes with file "in.txt"`},
		{name: "missing image", edit: replace(`"image": "alpine",`, ``), field: "image", problem: "missing"},
		{name: "empty image", edit: replace(`"alpine"`, `""`), field: "image", problem: "missing"},
		{name: "empty args", edit: replace(`["sh", "-c", "cat in.txt"]`, `[]`), field: "args", problem: "missing or empty"},
		{name: "args not a list", edit: replace(`["sh", "-c", "cat in.txt"]`, `"sh -c ls"`), field: "args", problem: "expected a list, got a string"},
		{name: "args of bool", edit: replace(`"-c"`, `true`), field: "args[1]", problem: "expected a string or a number, got true"},
		{name: "image of wrong type", edit: replace(`"alpine"`, `5`), field: "image", problem: "expected a string, got the number 5"},
		{name: "environment bool", edit: replace(`"stdin"`, `"environment": {"X": true}, "stdin"`), field: `environment["X"]`, problem: "expected a string or a number, got true"},
		{name: "environment null", edit: replace(`"stdin"`, `"environment": {"X": null}, "stdin"`), field: `environment["X"]`, problem: "got null"},
		{name: "environment name with =", edit: replace(`"stdin"`, `"environment": {"A=B": "x"}, "stdin"`), field: `environment["A=B"]`, problem: `cannot contain "="`},
		{name: "stdin not in files", edit: replace(`"stdin": "in.txt"`, `"stdin": "data/in.txt"`), field: "stdin", problem: "not one of the task's files"},
		{name: "stdout is the result file", edit: replace(`"out"`, `"kolejka_result.json"`), field: "stdout", problem: "clashes with kolejka_result.json"},
		{name: "stderr under stdout", edit: replace(`"err"`, `"out/err"`), field: "stderr", problem: `clashes with stdout "out"`},
		{name: "stdout absolute", edit: replace(`"out"`, `"/tmp/out"`), field: "stdout", problem: "absolute"},
		{name: "file spec of wrong type", edit: replace(`"data/in.txt"`, `5`), field: `files["in.txt"]`, problem: "expected a path, null or an object"},
		{name: "file spec typo", edit: replace(`{"path": "x", "reference": "abc"}`, `{"pth": "x"}`), field: `files["lib/x"].pth`, problem: `did you mean "path"?`},
		{name: "local file without path", edit: replace(`{"path": "x", "reference": "abc"}`, `{"reference": "abc"}`), field: `files["lib/x"].path`, problem: "missing"},
		{name: "server file without reference", mode: Server, edit: replace(`"reference": "abc"`, `"reference": null`), field: `files["lib/x"].reference`, problem: "missing (the server needs a blob reference"},
		{name: "bad reference", edit: replace(`"abc"`, `"a/b"`), field: `files["lib/x"].reference`, problem: `contains "/"`},
		{name: "collect without glob", edit: replace(`"stdin"`, `"collect": [{"strip": 1}], "stdin"`), field: "collect[0].glob", problem: "missing"},
		{name: "collect negative strip", edit: replace(`"stdin"`, `"collect": [{"glob": "*", "strip": -1}], "stdin"`), field: "collect[0].strip", problem: "negative"},
		{name: "collect glob escapes", edit: replace(`"stdin"`, `"collect": [{"glob": "*"}, {"glob": "../*"}], "stdin"`), field: "collect[1].glob", problem: "leaves the task folder"},
		{name: "collect absolute glob", edit: replace(`"stdin"`, `"collect": [{"glob": "/etc/*"}], "stdin"`), field: "collect[0].glob", problem: "absolute"},
		{name: "collect typo", edit: replace(`"stdin"`, `"collect": [{"glob": "*", "prefx": "a"}], "stdin"`), field: "collect[0].prefx", problem: `did you mean "prefix"?`},
		{name: "collect not objects", edit: replace(`"stdin"`, `"collect": ["*.txt"], "stdin"`), field: "collect[0]", problem: "expected an object with glob"},
		{name: "callback not http", edit: replace(`"stdin"`, `"callback_url": "ftp://example.com/x", "stdin"`), field: "callback_url", problem: "not an http or https URL"},
		{name: "callback relative", edit: replace(`"stdin"`, `"callback_url": "/cb", "stdin"`), field: "callback_url", problem: "not an http or https URL"},
		{name: "bad id", edit: replace(`"stdin"`, `"id": "bad id!", "stdin"`), field: "id", problem: "ids are made of"},
		{name: "long id", edit: replace(`"stdin"`, `"id": "`+strings.Repeat("a", 65)+`", "stdin"`), field: "id", problem: "longer than 64"},
		{name: "duplicate key", edit: replace(`"image": "alpine",`, `"image": "alpine", "image": "debian",`), field: "image", problem: "given more than once"},
		{name: "duplicate file", edit: replace(`"in.txt": "data/in.txt"`, `"in.txt": "data/in.txt", "in.txt": "b"`), field: `files["in.txt"]`, problem: "given more than once"},
		{name: "requires of numbers", edit: replace(`"stdin"`, `"requires": [1], "stdin"`), field: "requires[0]", problem: "expected a string"},
		{name: "malformed JSON", edit: replace(`"alpine",`, `"alpine"`), field: "", problem: "malformed JSON at line 3, column 3 (byte 24)"},
		{name: "truncated JSON", json: `{"image": "alpine",`, field: "", problem: "unexpected end of input"},
		{name: "trailing data", json: `{} {}`, field: "", problem: "after top-level value"},
		{name: "empty file", json: ``, field: "", problem: "the file is empty"},
		{name: "not an object", json: `["alpine"]`, field: "", problem: "expected a JSON object, got a list"},
		{name: "invalid UTF-8", json: "{\"image\": \"\xff\"}", field: "", problem: "invalid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input := tc.json
			if tc.edit != nil {
				input = tc.edit(goodTask)
				if input == goodTask {
					t.Fatal("the edit changed nothing")
				}
			}
			mode := tc.mode
			if mode == 0 {
				mode = Local
			}
			task, err := ParseTask([]byte(input), f)
			if err == nil {
				err = task.Validate(mode)
			} else if task != nil {
				t.Errorf("ParseTask returned a task and an error")
			}
			assertProblem(t, err, f, tc.field, tc.problem)
		})
	}
}

func replace(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

func TestBadResults(t *testing.T) {
	const good = `{"files": {"out": {"path": "out"}}, "result": 0, "status": "OK", "stdout": "out",
	  "stats": {"cpu": {"usage": "1s"}, "cpus": {"0": {"usage": "1s"}}, "memory": {"max_usage": "1M"},
	  "gpus": {"0": {"name": "T4", "memory_total": "16G"}}}, "tags": ["a"]}`
	if r, err := ParseResult([]byte(good), ResultFile); err != nil {
		t.Fatal(err)
	} else if err := r.Validate(Local); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, old, new, field, problem string
	}{
		{"bad status", `"OK"`, `"WA"`, "status", `"WA" is not a status (use OK, RE, TLE, MLE, PLE, OLE, SE)`},
		{"lower-case status", `"OK"`, `"ok"`, "status", "not a status"},
		{"status of wrong type", `"OK"`, `0`, "status", "expected a string"},
		{"unknown key", `"tags"`, `"tag"`, "tag", `did you mean "tags"?`},
		{"stats typo", `"max_usage"`, `"max_usge"`, "stats.memory.max_usge", `did you mean "max_usage"?`},
		{"stats unknown section", `"gpus"`, `"disk"`, "stats.disk", "unknown key"},
		{"core index", `"cpus": {"0"`, `"cpus": {"x"`, `stats.cpus["x"]`, "not a core index"},
		{"cpus entry typo", `{"usage": "1s"}}`, `{"usgae": "1s"}}`, `stats.cpus["0"].usgae`, `did you mean "usage"?`},
		{"cpu time unit", `{"cpu": {"usage": "1s"}`, `{"cpu": {"usage": "1h"}`, "stats.cpu.usage", `unknown unit "h"`},
		{"gpu both spellings", `"memory_total": "16G"`, `"memory_total": "16G", "total_memory": "16G"`, `stats.gpus["0"].total_memory`, "older name"},
		{"gpu typo", `"memory_total"`, `"memory_totl"`, `stats.gpus["0"].memory_totl`, `did you mean "memory_total"?`},
		{"exit code", `"result": 0`, `"result": "abc"`, "result", "not a whole number"},
		{"exit code fraction", `"result": 0`, `"result": 0.5`, "result", "not a whole number"},
		{"result file name", `"out": {"path": "out"}`, `"kolejka_result.json": {"path": "out"}`, `files["kolejka_result.json"]`, "clashes with kolejka_result.json"},
		{"escaping path", `{"path": "out"}`, `{"path": "../out"}`, `files["out"].path`, "leaves the folder"},
		{"negative memory", `"1M"`, `"-1M"`, "stats.memory.max_usage", "negative"},
		{"tags of numbers", `["a"]`, `[1]`, "tags[0]", "expected a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input := strings.Replace(good, tc.old, tc.new, 1)
			if input == good {
				t.Fatal("the edit changed nothing")
			}
			r, err := ParseResult([]byte(input), ResultFile)
			if err == nil {
				err = r.Validate(Local)
			}
			assertProblem(t, err, ResultFile, tc.field, tc.problem)
		})
	}
	r, err := ParseResult([]byte(`{"files": {"a": {"path": "a"}}}`), ResultFile)
	if err != nil {
		t.Fatal(err)
	}
	assertProblem(t, r.Validate(Server), ResultFile, `files["a"].reference`, "missing")
}

// All problems of a file are reported at once, each an *Error.
func TestAllProblemsAtOnce(t *testing.T) {
	_, err := ParseTask([]byte(`{"image": 1, "args": "x", "limits": {"memmory": "1M", "time": "1h", "cpus": -1}, "extra": 1}`), "t.json")
	for _, want := range []struct{ field, problem string }{
		{"image", "expected a string"},
		{"args", "expected a list"},
		{"limits.memmory", "unknown key"},
		{"limits.time", "unknown unit"},
		{"limits.cpus", "negative"},
		{"extra", "unknown key"},
	} {
		assertProblem(t, err, "t.json", want.field, want.problem)
	}
	task := &Task{}
	err = task.Validate(Local)
	assertProblem(t, err, TaskFile, "image", "missing")
	assertProblem(t, err, TaskFile, "args", "missing")
}

// A flood of problems is capped, and says how many more there were.
func TestProblemsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"limits": {}`)
	for i := range 200 {
		b.WriteString(`, "k`)
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(`": 1`)
	}
	b.WriteString("}")
	_, err := ParseTask([]byte(b.String()), TaskFile)
	if err == nil || !strings.Contains(err.Error(), "and 150 more problems") {
		t.Fatalf("error = %v", err)
	}
	if n := strings.Count(err.Error(), "\n"); n != maxProblems {
		t.Errorf("%d lines in the error; want %d", n+1, maxProblems+1)
	}
}

func TestValidateMode(t *testing.T) {
	task, err := ParseTask([]byte(goodTask), TaskFile)
	if err != nil {
		t.Fatal(err)
	}
	assertProblem(t, task.Validate(0), TaskFile, "", "unknown validation mode")
	if Local.String() != "local" || Server.String() != "server" {
		t.Errorf("mode names: %v, %v", Local, Server)
	}
}

// Values only code can produce are caught when written.
func TestEncodeRefusesUnreadableValues(t *testing.T) {
	neg := int64(-1)
	task := &Task{Image: "a", Args: []string{"x"}, Limits: Limits{Memory: &neg}}
	_, err := task.Encode()
	assertProblem(t, err, TaskFile, "limits.memory", "negative")
	task = &Task{Image: "a", Args: []string{"\xff"}}
	if _, err := task.Encode(); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("Encode with invalid UTF-8: %v", err)
	}
	r := &Result{Status: "WA"}
	_, err = r.Encode()
	assertProblem(t, err, ResultFile, "status", "not a status")
	r = &Result{Stats: Stats{CPUs: map[string]CPUStats{"a": {}}}}
	_, err = r.Encode()
	assertProblem(t, err, ResultFile, `stats.cpus["a"]`, "not a core index")
}
