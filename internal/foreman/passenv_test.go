package foreman

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
)

// envExecutor runs nothing: it reports the environment of the task the
// foreman prepared and answers OK.
type envExecutor struct{ got chan map[string]string }

func (e envExecutor) Execute(_ context.Context, taskDir, resultDir string, _ worker.Options) (*spec.Result, error) {
	t, err := spec.LoadTask(taskDir)
	if err != nil {
		return nil, err
	}
	e.got <- t.Environment
	if err := os.MkdirAll(resultDir, 0o755); err != nil {
		return nil, err
	}
	code := 0
	return &spec.Result{ID: t.ID, Result: &code, Status: spec.StatusOK, Files: map[string]spec.File{}}, nil
}

// A task made from a type takes from the node each variable the type asks
// for that the node allows and has set; never one the node does not
// allow, and never over the task's own value.
func TestPassEnv(t *testing.T) {
	g := newGrid(t)
	ctx := context.Background()
	alice := g.client("alice")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(`{"image": "x", "args": ["env"],
		"environment": {"OWN": "the type's", "PLAIN": "p"},
		"pass_env": ["ALLOWED", "DENIED", "UNSET", "OWN"]}`), 0o644)
	if _, err := alice.TypePut(ctx, "envy", dir, false); err != nil {
		t.Fatal(err)
	}
	host := map[string]string{"ALLOWED": "yes", "DENIED": "secret", "OWN": "the node's", "OTHER": "o"}
	exec := envExecutor{got: make(chan map[string]string, 2)}
	f, err := New(Config{
		Client:    g.client("node"),
		Executor:  exec,
		Dir:       t.TempDir(),
		Capacity:  lim(t, "memory", "2G", "time", "2M"),
		Cores:     []int{0},
		Defaults:  lim(t, "cpus", "1", "memory", "64M"),
		PassEnv:   []string{"ALLOWED", "UNSET", "OWN", "OTHER"},
		LookupEnv: func(k string) (string, bool) { v, ok := host[k]; return v, ok },
		Logger:    testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	go f.Run(ctx)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		f.Shutdown(ctx)
	})
	typed, err := alice.TypeTaskPut(ctx, client.TypeTask{Type: "envy"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ALLOWED": "yes", "OWN": "the type's", "PLAIN": "p"}
	select {
	case env := <-exec.got:
		if !reflect.DeepEqual(env, want) {
			t.Errorf("the task's environment %v, want %v", env, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the task did not run")
	}
	// The stored task is untouched: the variables are the node's doing.
	stored, err := alice.Task(ctx, typed.ID)
	if err != nil || !maps.Equal(stored.Environment, map[string]string{"OWN": "the type's", "PLAIN": "p"}) {
		t.Errorf("stored environment %v %v", stored.Environment, err)
	}
	// A plain task with the same environment gets nothing from the node.
	g.submit(`{"image": "x", "args": ["env"], "environment": {"PLAIN": "p"}}`, nil)
	select {
	case env := <-exec.got:
		if !reflect.DeepEqual(env, map[string]string{"PLAIN": "p"}) {
			t.Errorf("a plain task's environment %v", env)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the plain task did not run")
	}
}
