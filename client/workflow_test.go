package client_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/spec"
)

// workNode plays a node until ctx ends: every task it takes ends OK with
// out.txt holding the task's args.
func workNode(ctx context.Context, t *testing.T, g *grid) {
	n := g.as(t, "node")
	for ctx.Err() == nil {
		tasks, err := n.Dequeue(ctx, client.DequeueRequest{Concurrency: 10, Wait: 200 * time.Millisecond})
		if err != nil {
			if ctx.Err() == nil {
				t.Error(err)
			}
			return
		}
		for _, task := range tasks {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "out.txt"), []byte(strings.Join(task.Args, " ")), 0o644)
			code := 0
			res := &spec.Result{ID: task.ID, Result: &code, Status: spec.StatusOK, Files: map[string]spec.File{"out.txt": {Path: "out.txt"}}}
			if err := spec.WriteResult(dir, res); err != nil {
				t.Error(err)
				return
			}
			if _, err := n.ResultPut(ctx, dir); err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
		}
	}
}

// A workflow folder put, run by a node and fetched: OUT/STEP/ and
// OUT/STEP/ITEM/ result folders and kolejka_workflow_result.json.
func TestWorkflowPutAndGet(t *testing.T) {
	var ups atomic.Int64
	g := startServer(t, uploads(&ups))
	alice := g.as(t, "alice")
	dir := t.TempDir()
	files := map[string]string{
		"kolejka_workflow.json": `{"tasks": {"a": {"task": "a"}, "b": {"task": "b", "after": ["a"], "items": ["1", "2"], "inputs": {"prev": "a:out.txt"}}}}`,
		"a/kolejka_task.json":   `{"image": "busybox:latest", "args": ["make", "all"], "files": {"Makefile": {"path": "Makefile"}}}`,
		"a/Makefile":            "all:\n",
		"b/kolejka_task.json":   `{"image": "busybox:latest", "args": ["test", "{item}"]}`,
	}
	for name, content := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A bad workflow is refused by step and field before anything is uploaded.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "kolejka_workflow.json"), []byte(`{"tasks": {"a": {"task": "a", "after": ["nope"]}}}`), 0o644)
	if _, err := alice.WorkflowPut(ctx, bad); err == nil || !strings.Contains(err.Error(), `tasks["a"].after[0]`) {
		t.Fatalf("bad workflow: %v", err)
	}
	if ups.Load() != 0 {
		t.Errorf("a refused workflow uploaded %d files", ups.Load())
	}
	key, err := alice.WorkflowPut(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	nodeCtx, stopNode := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); workNode(nodeCtx, t, g) }()
	defer func() { stopNode(); <-done }()
	out := filepath.Join(t.TempDir(), "out")
	info, err := alice.WorkflowGet(ctx, key, out, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != "ok" {
		t.Fatalf("run %s", info.State)
	}
	for path, want := range map[string]string{"a/out.txt": "make all", "b/1/out.txt": "test 1", "b/2/out.txt": "test 2"} {
		if data, err := os.ReadFile(filepath.Join(out, path)); err != nil || string(data) != want {
			t.Errorf("%s: %q %v, want %q", path, data, err, want)
		}
	}
	var saved client.WorkflowInfo
	data, err := os.ReadFile(filepath.Join(out, client.WorkflowResultFile))
	if err != nil || json.Unmarshal(data, &saved) != nil || saved.Key != key || len(saved.Steps) != 2 || saved.Steps[1].Instances[1].Status != "OK" {
		t.Errorf("%s: %s %v", client.WorkflowResultFile, data, err)
	}
	runs, err := alice.Workflows(ctx)
	if err != nil || len(runs) != 1 || runs[0].Key != key {
		t.Errorf("runs %+v %v", runs, err)
	}
	if _, err := alice.WorkflowRetry(ctx, key); err == nil || !strings.Contains(err.Error(), "nothing failed") {
		t.Errorf("retry of an ok run: %v", err)
	}
}
