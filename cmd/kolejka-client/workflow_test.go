package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/spec"
)

// runNode plays a node until ctx ends: every task ends OK with out.txt.
func runNode(ctx context.Context, t *testing.T, e *env) {
	n, err := client.New(ctx, client.Config{Server: e.url, Username: "node", Password: "node-pw"})
	if err != nil {
		t.Error(err)
		return
	}
	for ctx.Err() == nil {
		tasks, err := n.Dequeue(ctx, client.DequeueRequest{Concurrency: 10, Wait: 200 * time.Millisecond})
		if err != nil {
			return // ctx ended
		}
		for _, task := range tasks {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "out.txt"), []byte(strings.Join(task.Args, " ")), 0o644)
			code := 0
			res := &spec.Result{ID: task.ID, Result: &code, Status: spec.StatusOK, Files: map[string]spec.File{"out.txt": {Path: "out.txt"}}}
			if err := spec.WriteResult(dir, res); err == nil {
				n.ResultPut(ctx, dir)
			}
		}
	}
}

func TestWorkflowCommands(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	for name, content := range map[string]string{
		"kolejka_workflow.json": `{"tasks": {"a": {"task": "a"}, "b": {"task": "a", "after": ["a"], "items": ["x", "y"]}}}`,
		"a/kolejka_task.json":   `{"image": "busybox:latest", "args": ["run", "{item}"]}`,
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	code, out := e.run(t, "workflow", "put", dir)
	key := strings.TrimSpace(out)
	if code != 0 || len(key) != 32 {
		t.Fatalf("workflow put: %d %q", code, out)
	}
	if code, out := e.run(t, "workflow", "show", key); code != 0 || !strings.Contains(out, "running") || !strings.Contains(out, "submitted") {
		t.Fatalf("workflow show: %d %q", code, out)
	}
	if code, out := e.run(t, "workflow", "ls"); code != 0 || !strings.Contains(out, key) {
		t.Fatalf("workflow ls: %d %q", code, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); runNode(ctx, t, e) }()
	defer func() { cancel(); <-done }()
	res := filepath.Join(t.TempDir(), "out")
	if code, out := e.run(t, "workflow", "get", key, res); code != 0 || strings.TrimSpace(out) != "ok" {
		t.Fatalf("workflow get: %d %q", code, out)
	}
	for path, want := range map[string]string{"a/out.txt": "run {item}", "b/x/out.txt": "run x", "b/y/out.txt": "run y"} {
		if data, err := os.ReadFile(filepath.Join(res, path)); err != nil || string(data) != want {
			t.Errorf("%s: %q %v, want %q", path, data, err, want)
		}
	}
	code, out = e.run(t, "workflow", "show", "--json", key)
	var info client.WorkflowInfo
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.State != "ok" || len(info.Steps) != 2 {
		t.Fatalf("workflow show --json: %d %q", code, out)
	}
	res2 := filepath.Join(t.TempDir(), "out2")
	code, out, progress := e.runBoth(t, "workflow", "execute", dir, res2)
	if code != 0 || strings.TrimSpace(out) != "ok" {
		t.Fatalf("workflow execute: %d %q", code, out)
	}
	// Live progress on stderr: the run's counts as they change, the last
	// one the ended run's.
	lines := strings.Split(strings.TrimSpace(progress), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(lines[0], "run ") || !strings.Contains(last, " ok: ") || !strings.Contains(last, " ok") ||
		strings.Contains(last, "waiting") || strings.Contains(last, "submitted") {
		t.Errorf("workflow execute's progress:\n%s", progress)
	}
	if data, err := os.ReadFile(filepath.Join(res2, "b", "y", "out.txt")); err != nil || string(data) != "run y" {
		t.Errorf("execute's b/y: %q %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(res2, client.WorkflowResultFile)); err != nil {
		t.Error(err)
	}
	if code, _ := e.run(t, "workflow", "retry", key); code == 0 {
		t.Error("retry of an ok run succeeded")
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "kolejka_workflow.json"), []byte(`{"tasks": {"a": {"task": "a", "after": ["a"]}}}`), 0o644)
	if code, _ := e.run(t, "workflow", "put", bad); code == 0 {
		t.Error("a bad workflow was put")
	}
}
