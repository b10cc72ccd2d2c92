package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
)

// runBoth is run that also returns what the command wrote to stderr.
func (e *env) runBoth(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	r, w, _ := os.Pipe()
	saved := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	func() {
		defer func() { os.Stderr = saved }()
		code, stdout = e.run(t, args...)
	}()
	w.Close()
	return code, stdout, <-done
}

func TestLifecycleCommands(t *testing.T) {
	e := setup(t)
	task := t.TempDir()
	os.WriteFile(filepath.Join(task, spec.TaskFile), []byte(`{"image": "busybox", "args": ["cat", "x"], "files": {"x": null}, "stdout": "out"}`), 0o644)
	os.WriteFile(filepath.Join(task, "x"), []byte("x\n"), 0o644)
	put := func() string {
		t.Helper()
		code, out := e.run(t, "task", "put", task)
		if code != 0 {
			t.Fatalf("task put: %d", code)
		}
		return strings.TrimSpace(out)
	}
	first, second, third := put(), put(), put()

	// ls: newest first, paged, JSON.
	code, out := e.run(t, "task", "ls", "--json", "--limit", "2")
	var page struct {
		Tasks []map[string]any `json:"tasks"`
		Next  string           `json:"next"`
	}
	if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil {
		t.Fatalf("task ls --json: %d %v %q", code, err, out)
	}
	if len(page.Tasks) != 2 || page.Tasks[0]["key"] != third || page.Tasks[1]["key"] != second || page.Next != second ||
		page.Tasks[0]["state"] != "queued" || page.Tasks[0]["queue"] != "default" {
		t.Errorf("first page %+v", page)
	}
	code, out, errOut := e.runBoth(t, "task", "ls", "--before", page.Next)
	if code != 0 || !strings.Contains(out, first) || strings.Contains(out, second) || !strings.HasPrefix(out, "KEY") || strings.Contains(errOut, "more:") {
		t.Errorf("second page: %d %q %q", code, out, errOut)
	}

	// cancel: idempotent; show says so; result get says cancelled (9).
	if code, out := e.run(t, "task", "cancel", first, first); code != 0 || !strings.Contains(out, "cancelled (it was queued)") || !strings.Contains(out, "already cancelled") {
		t.Errorf("task cancel twice: %d %q", code, out)
	}
	code, out = e.run(t, "task", "show", "--json", first)
	var shown map[string]any
	if err := json.Unmarshal([]byte(out), &shown); code != 0 || err != nil {
		t.Fatalf("task show --json: %d %v %q", code, err, out)
	}
	for _, k := range []string{"key", "state", "queue", "type", "node", "attempts", "status"} {
		if _, ok := shown[k]; !ok {
			t.Errorf("task show --json has no %q: %s", k, out)
		}
	}
	if shown["key"] != first || shown["state"] != "cancelled" || shown["finished"] == "" {
		t.Errorf("task show --json: %s", out)
	}
	if code, out := e.run(t, "task", "show", first); code != 0 || !strings.Contains(out, "state:") || !strings.Contains(out, "cancelled") {
		t.Errorf("task show: %d %q", code, out)
	}
	code, _, errOut = e.runBoth(t, "result", "get", "--wait", "30", first, filepath.Join(t.TempDir(), "r"))
	if code != exitCancelled || !strings.Contains(errOut, "was cancelled") {
		t.Errorf("result get of a cancelled task: exit %d %q, want %d", code, errOut, exitCancelled)
	}

	// clone: a new key, queued.
	code, out = e.run(t, "task", "clone", first)
	clone := strings.TrimSpace(out)
	if code != 0 || len(clone) != 32 || clone == first {
		t.Fatalf("task clone: %d %q", code, out)
	}
	if code, out := e.run(t, "task", "ls", "--state", "queued", "--json"); code != 0 || !strings.Contains(out, clone) || strings.Contains(out, first) {
		t.Errorf("ls --state queued: %d %s", code, out)
	}

	// A finished task cannot be cancelled: an error saying so, exit 7.
	nodeClient, err := client.New(context.Background(), client.Config{Server: e.url, Username: "node", Password: "node-pw"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ts, err := nodeClient.Dequeue(context.Background(), client.DequeueRequest{Concurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) == 0 {
			break
		}
		zero := 0
		if _, err := nodeClient.ResultPost(context.Background(), t.TempDir(), &spec.Result{ID: ts[0].ID, Result: &zero, Status: spec.StatusOK}); err != nil {
			t.Fatal(err)
		}
	}
	code, _, errOut = e.runBoth(t, "task", "cancel", second)
	if code != exitRefused || !strings.Contains(errOut, "finished") {
		t.Errorf("cancel of a finished task: exit %d %q", code, errOut)
	}
	if code, out := e.run(t, "task", "show", "--json", second); code != 0 || !strings.Contains(out, `"status": "OK"`) || !strings.Contains(out, `"state": "done"`) {
		t.Errorf("the finished task after the refused cancel: %s", out)
	}
}

// execute waiting on a task that is cancelled stops with exit 9 and says so.
func TestExecuteCancelled(t *testing.T) {
	e := setup(t)
	task := t.TempDir()
	os.WriteFile(filepath.Join(task, spec.TaskFile), []byte(`{"image": "busybox", "args": ["true"]}`), 0o644)
	alice, err := client.New(context.Background(), client.Config{Server: e.url, Username: "alice", Password: "alice-pw"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		// Cancel the task execute submitted, once it is listed.
		for range 500 {
			list, err := alice.Tasks(context.Background(), client.TaskFilter{State: "queued"})
			if err == nil && len(list.Tasks) == 1 {
				alice.Cancel(context.Background(), list.Tasks[0].Key)
				return
			}
			time.Sleep(10 * time.Millisecond) // polling for the submission, bounded above
		}
	}()
	code, _, errOut := e.runBoth(t, "execute", task, filepath.Join(t.TempDir(), "r"))
	if code != exitCancelled || !strings.Contains(errOut, "was cancelled") {
		t.Errorf("execute of a cancelled task: exit %d %q, want %d", code, errOut, exitCancelled)
	}
}

// Bad options: exit 2 naming the option, nothing sent.
func TestLifecycleBadInput(t *testing.T) {
	e := setup(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"task", "ls", "--state", "finished"}, "--state"},
		{[]string{"task", "ls", "--limit", "0"}, "--limit"},
		{[]string{"task", "ls", "--limit", "5000"}, "--limit"},
		{[]string{"task", "ls", "--queue", "../x"}, "--queue"},
		{[]string{"task", "cancel"}, "KEY"},
		{[]string{"task", "show"}, "KEY"},
		{[]string{"task", "clone", "a", "b"}, "KEY"},
		{[]string{"result", "get", "--wait", "-1", strings.Repeat("a", 32), t.TempDir()}, "--wait"},
	} {
		code, _, errOut := e.runBoth(t, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d %q, want 2 naming %s", c.args, code, errOut, c.want)
		}
	}
}

// --queue puts a folder's task, or a type's, in the queue it names,
// whatever the task's own "queue" key says; a queue that is not a name is
// a usage error (2) and nothing is submitted.
func TestQueueOption(t *testing.T) {
	e := setup(t)
	if err := e.srv.AddQueue(context.Background(), server.Queue{Name: "fast"}); err != nil {
		t.Fatal(err)
	}
	task := t.TempDir()
	os.WriteFile(filepath.Join(task, spec.TaskFile), []byte(`{"image": "busybox", "args": ["true"], "queue": "default"}`), 0o644)
	queueOf := func(key string) string {
		t.Helper()
		code, out := e.run(t, "task", "show", "--json", key)
		var shown map[string]any
		if err := json.Unmarshal([]byte(out), &shown); code != 0 || err != nil {
			t.Fatalf("task show: %d %v %q", code, err, out)
		}
		return fmt.Sprint(shown["queue"])
	}
	code, out := e.run(t, "task", "put", "--queue", "fast", task)
	if code != 0 {
		t.Fatalf("task put --queue fast: %d", code)
	}
	if q := queueOf(strings.TrimSpace(out)); q != "fast" {
		t.Errorf("task put --queue fast: the task is in %q", q)
	}
	code, out = e.run(t, "task", "put", task)
	if q := queueOf(strings.TrimSpace(out)); code != 0 || q != "default" {
		t.Errorf("task put without --queue: %d, queue %q", code, q)
	}
	if code, _ := e.run(t, "task", "put", "--queue", "no such", task); code != 2 {
		t.Errorf("task put --queue 'no such': exit %d, want 2", code)
	}
	if code, _ := e.run(t, "task", "put", "--queue", "missing", task); code != 7 {
		t.Errorf("task put --queue missing (no such queue): exit %d, want 7 (the server's refusal)", code)
	}
	code, out = e.run(t, "task", "ls", "--json")
	if n := strings.Count(out, `"key"`); code != 0 || n != 2 {
		t.Errorf("after two refused submissions %d tasks are listed, want 2: %s", n, out)
	}
}
