package main

import (
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

// Every command, end to end, against a real server on loopback.

type env struct {
	url  string
	conf string
	srv  *server.Server
}

func setup(t *testing.T) *env {
	t.Helper()
	s, err := server.Open(server.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s.AddUser(ctx, "alice", "alice-pw", server.Clients)
	s.AddUser(ctx, "node", "node-pw", server.Processors)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Shutdown(context.Background()) })
	conf := filepath.Join(t.TempDir(), "kolejka.conf")
	os.WriteFile(conf, []byte("[default]\nserver = "+hs.URL+"\n\n[client]\nusername = alice\npassword = alice-pw\nmemory = 512M\n\n[node]\nusername = node\npassword = node-pw\n"), 0o644)
	return &env{url: hs.URL, conf: conf, srv: s}
}

// run runs kolejka-client with args and returns its exit code and stdout.
func (e *env) run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, _ := os.Pipe()
	saved := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	code := 0
	func() {
		defer func() { os.Stdout = saved }()
		code = runApp(append([]string{"kolejka-client", "--config-file", e.conf}, args...))
	}()
	w.Close()
	return code, <-done
}

func runApp(args []string) int {
	return cliexit.Run(app(), args)
}

func TestBlobCommands(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("blob\n"), 0o644)
	code, out := e.run(t, "blob", "put", filepath.Join(dir, "f"))
	ref := strings.TrimSpace(out)
	if code != 0 || len(ref) == 0 {
		t.Fatalf("blob put: %d %q", code, out)
	}
	if code, _ := e.run(t, "blob", "get", ref, filepath.Join(dir, "g")); code != 0 {
		t.Fatalf("blob get: %d", code)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "g")); string(data) != "blob\n" {
		t.Fatalf("got %q", data)
	}
	if code, _ := e.run(t, "blob", "delete", ref); code != 0 {
		t.Fatalf("blob delete: %d", code)
	}
	if code, _ := e.run(t, "blob", "get", ref, filepath.Join(dir, "h")); code != exitNotFound {
		t.Fatalf("get of a deleted blob: exit %d, want %d", code, exitNotFound)
	}
}

func TestTaskResultAndExecuteCommands(t *testing.T) {
	e := setup(t)
	task := t.TempDir()
	os.WriteFile(filepath.Join(task, spec.TaskFile), []byte(`{"image": "busybox", "args": ["cat", "x"], "files": {"x": null}, "stdout": "out", "limits": {"memory": "1G"}}`), 0o644)
	os.WriteFile(filepath.Join(task, "x"), []byte("x\n"), 0o644)

	code, out := e.run(t, "task", "put", "--time", "5s", task)
	key := strings.TrimSpace(out)
	if code != 0 || len(key) != 32 {
		t.Fatalf("task put: %d %q", code, out)
	}
	got := filepath.Join(t.TempDir(), "task")
	if code, _ := e.run(t, "task", "get", key, got); code != 0 {
		t.Fatalf("task get: %d", code)
	}
	back, err := spec.LoadTask(got)
	if err != nil {
		t.Fatal(err)
	}
	// Caps: the [client] section's memory and --time.
	if *back.Limits.Memory != 512<<20 || back.Limits.Time.Seconds() != 5 {
		t.Fatalf("limits %s", back.Limits)
	}
	if code, _ := e.run(t, "result", "get", key, filepath.Join(t.TempDir(), "r")); code != exitNotFound {
		t.Fatalf("result get before any: exit %d", code)
	}

	// The node (another section of the same file) takes the task and posts
	// a result folder with `result put`.
	nodeClient, err := client.New(context.Background(), client.Config{Server: e.url, Username: "node", Password: "node-pw"})
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := nodeClient.Dequeue(context.Background(), client.DequeueRequest{Concurrency: 1})
	if err != nil || len(tasks) != 1 || tasks[0].ID != key {
		t.Fatalf("dequeue: %v %v", tasks, err)
	}
	res := t.TempDir()
	os.WriteFile(filepath.Join(res, "out"), []byte("done\n"), 0o644)
	zero := 0
	spec.WriteResult(res, &spec.Result{ID: key, Result: &zero, Status: spec.StatusOK, Stdout: "out", Files: map[string]spec.File{"out": {Path: "out"}}})
	if code, _ := e.run(t, "--config", "node", "result", "put", res); code != 0 {
		t.Fatalf("result put: %d", code)
	}
	rdir := filepath.Join(t.TempDir(), "r")
	if code, _ := e.run(t, "result", "get", key, rdir); code != 0 {
		t.Fatalf("result get: %d", code)
	}
	if data, _ := os.ReadFile(filepath.Join(rdir, "out")); string(data) != "done\n" {
		t.Fatalf("result out %q", data)
	}
	if code, _ := e.run(t, "result", "delete", key); code != 0 {
		t.Fatalf("result delete: %d", code)
	}
	if code, _ := e.run(t, "task", "delete", key); code != 0 {
		t.Fatalf("task delete: %d", code)
	}

	// execute, with a node answering.
	go func() {
		for {
			ts, err := nodeClient.Dequeue(context.Background(), client.DequeueRequest{Concurrency: 1, Wait: time.Second})
			if err != nil {
				return
			}
			for _, tk := range ts {
				r := t.TempDir()
				os.WriteFile(filepath.Join(r, "out"), []byte("executed\n"), 0o644)
				spec.WriteResult(r, &spec.Result{ID: tk.ID, Result: &zero, Status: spec.StatusOK, Stdout: "out", Files: map[string]spec.File{"out": {Path: "out"}}})
				nodeClient.ResultPut(context.Background(), r)
				return
			}
		}
	}()
	edir := filepath.Join(t.TempDir(), "e")
	if code, _ := e.run(t, "execute", "--interval", "0.05", task, edir); code != 0 {
		t.Fatalf("execute: %d", code)
	}
	if data, _ := os.ReadFile(filepath.Join(edir, "out")); string(data) != "executed\n" {
		t.Fatalf("execute out %q", data)
	}
}

func TestExitCodes(t *testing.T) {
	e := setup(t)
	badTask := t.TempDir()
	os.WriteFile(filepath.Join(badTask, spec.TaskFile), []byte(`{"image": "x", "args": ["true"], "limits": {"memory": "64MiB"}}`), 0o644)
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"no arguments", []string{"task", "put"}, 2},
		{"flag after argument", []string{"task", "put", badTask, "--time", "1s"}, 2},
		{"bad task", []string{"task", "put", badTask}, 2},
		{"bad password", []string{"--password", "nope", "task", "get", "x", t.TempDir()}, exitLogin},
		{"no server", []string{"--server", "http://127.0.0.1:1", "task", "get", "x", t.TempDir()}, exitConnect},
		{"unknown task", []string{"task", "get", strings.Repeat("a", 32), filepath.Join(t.TempDir(), "t")}, exitNotFound},
		// Every not-found is 6, whatever the server's answer looks like:
		// a result of an unknown task is Kolejka's FAIL "Task X is unknown".
		{"result of an unknown task", []string{"result", "get", strings.Repeat("b", 32), filepath.Join(t.TempDir(), "r")}, exitNotFound},
		{"delete the result of an unknown task", []string{"result", "delete", strings.Repeat("b", 32)}, exitNotFound},
		{"delete an unknown task", []string{"task", "delete", strings.Repeat("c", 32)}, exitNotFound},
		{"get an unknown blob", []string{"blob", "get", strings.Repeat("d", 32), filepath.Join(t.TempDir(), "b")}, exitNotFound},
		{"delete an unknown blob", []string{"blob", "delete", strings.Repeat("d", 32)}, exitNotFound},
		{"processor path", []string{"--config", "node", "task", "put", badTask}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if code, _ := e.run(t, c.args...); code != c.want {
				t.Fatalf("exit %d, want %d", code, c.want)
			}
		})
	}
}

// The environment wins over kolejka.conf, and the options over the
// environment; KOLEJKA_CONFIG_FILE names the file.
func TestEnvironment(t *testing.T) {
	e := setup(t)
	unknown := func() []string {
		return []string{"task", "get", strings.Repeat("a", 32), filepath.Join(t.TempDir(), "t")}
	}
	t.Setenv("KOLEJKA_PASSWORD", "nope")
	if code, _ := e.run(t, unknown()...); code != exitLogin {
		t.Errorf("KOLEJKA_PASSWORD over the file's: exit %d, want %d", code, exitLogin)
	}
	if code, _ := e.run(t, append([]string{"--password", "alice-pw"}, unknown()...)...); code != exitNotFound {
		t.Errorf("--password over KOLEJKA_PASSWORD: exit %d, want %d", code, exitNotFound)
	}
	os.Unsetenv("KOLEJKA_PASSWORD")
	t.Setenv("KOLEJKA_CONFIG_FILE", e.conf)
	if code := runApp(append([]string{"kolejka-client"}, unknown()...)); code != exitNotFound {
		t.Errorf("KOLEJKA_CONFIG_FILE: exit %d, want %d", code, exitNotFound)
	}
	t.Setenv("KOLEJKA_CONFIG", "nosuchsection")
	if code := runApp(append([]string{"kolejka-client"}, unknown()...)); code != exitLogin {
		t.Errorf("KOLEJKA_CONFIG naming a section without credentials: exit %d, want %d", code, exitLogin)
	}
}
