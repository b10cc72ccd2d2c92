package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/spec"
)

// The type commands and --type on task put, against a real server.
func TestTypeCommands(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(`{"image": "kolejka-test:latest", "args": ["sh", "run.sh", "{n}", "{src}"],
 "params": {"n": {"default": "10"}, "src": {"file": true}},
 "limits": {"time": "10s", "memory": "64M"}, "stdout": "out.txt",
 "files": {"run.sh": {"path": "run.sh"}}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "run.sh"), []byte("echo \"$@\"\n"), 0o644)
	if code, out := e.run(t, "type", "put", "compile", dir); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("type put: %d %q", code, out)
	}
	if code, out := e.run(t, "type", "put", "--public", "compile", dir); code != 0 || strings.TrimSpace(out) != "2" {
		t.Fatalf("type put --public: %d %q", code, out)
	}
	code, out := e.run(t, "type", "ls")
	if code != 0 || !strings.Contains(out, "compile") || !strings.Contains(out, `n="10" src (file)`) {
		t.Fatalf("type ls: %d %q", code, out)
	}
	code, out = e.run(t, "type", "ls", "--json")
	var listed []client.TypeInfo
	if code != 0 || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 1 || listed[0].Version != 2 || !listed[0].Public {
		t.Fatalf("type ls --json: %d %q", code, out)
	}
	code, out = e.run(t, "type", "get", "compile")
	if code != 0 || !strings.Contains(out, `"{src}"`) || !strings.Contains(out, `"reference"`) {
		t.Fatalf("type get: %d %q", code, out)
	}
	got := filepath.Join(t.TempDir(), "got")
	if code, _ := e.run(t, "type", "get", "compile", got); code != 0 {
		t.Fatalf("type get DIR: %d", code)
	}
	if data, _ := os.ReadFile(filepath.Join(got, "run.sh")); string(data) != "echo \"$@\"\n" {
		t.Fatalf("type get DIR wrote %q", data)
	}
	if code, out := e.run(t, "type", "put", "again", got); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("type put of what type get wrote: %d %q", code, out)
	}

	src := filepath.Join(t.TempDir(), "main.c")
	os.WriteFile(src, []byte("int main() {}\n"), 0o644)
	code, out = e.run(t, "task", "put", "--type", "compile", "-p", "n=5", "-f", "src="+src)
	key := strings.TrimSpace(out)
	if code != 0 || len(key) != 32 {
		t.Fatalf("task put --type: %d %q", code, out)
	}
	alice, err := client.New(context.Background(), client.Config{Server: e.url, Username: "alice", Password: "alice-pw"})
	if err != nil {
		t.Fatal(err)
	}
	task, err := alice.Task(context.Background(), key)
	if err != nil || strings.Join(task.Args, " ") != "sh run.sh 5 main.c" {
		t.Fatalf("the task made: %+v %v", task, err)
	}
	// A value with commas is one value.
	code, out = e.run(t, "task", "put", "--type", "compile", "-p", "n=a,b", "-f", "src="+src)
	if task, err := alice.Task(context.Background(), strings.TrimSpace(out)); code != 0 || err != nil || task.Args[2] != "a,b" {
		t.Fatalf("-p n=a,b: %d %v %v", code, task, err)
	}
	// Refusals exit 2 and submit nothing.
	stats := func() int {
		st, err := alice.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.TaskCount
	}
	before := stats()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"task", "put", "--type", "compile"}, `params["src"]: missing`},
		{[]string{"task", "put", "--type", "compile", "-p", "m=1", "-f", "src=" + src}, `params["m"]: unknown parameter`},
		{[]string{"task", "put", "--type", "compile", "-p", "src=main.c"}, `params["src"]: is a file parameter`},
		{[]string{"task", "put", "--type", "compile", "-p", "n", "-f", "src=" + src}, `--param "n": expected NAME=VALUE`},
		{[]string{"task", "put", "-p", "n=1", dir}, "need --type"},
		{[]string{"task", "put", "--type", "compile", "-f", "src=" + src, dir}, "no TASK_DIR"},
		{[]string{"execute", "--type", "compile", "--consume", "-f", "src=" + src, got + "x"}, "--consume"},
	} {
		if code, msg := e.runStderr(t, c.args...); code != 2 || !strings.Contains(msg, c.want) {
			t.Errorf("%v: exit %d %q, want 2 naming %s", c.args, code, msg, c.want)
		}
	}
	if n := stats(); n != before {
		t.Errorf("refused submissions made tasks: %d → %d", before, n)
	}
	if code, _ := e.run(t, "type", "rm", "compile"); code != 0 {
		t.Fatalf("type rm: %d", code)
	}
	if code, _ := e.run(t, "type", "get", "compile"); code != exitNotFound {
		t.Errorf("type get after rm: exit %d", code)
	}
}

// runStderr runs kolejka-client with args and returns its exit code and
// what it wrote to stderr.
func (e *env) runStderr(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, _ := os.Pipe()
	saved := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	code := 0
	func() {
		defer func() { os.Stderr = saved }()
		code = runApp(append([]string{"kolejka-client", "--config-file", e.conf}, args...))
	}()
	w.Close()
	return code, <-done
}
