package client_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/spec"
)

func TestLifecycle(t *testing.T) {
	g := startServer(t, nil)
	alice, bob := g.as(t, "alice"), g.as(t, "bob")
	ctx := context.Background()
	dir := writeTask(t, `{"image": "busybox", "args": ["cat", "in.txt"], "files": {"in.txt": null}, "stdout": "stdout"}`,
		map[string]string{"in.txt": "again\n"})
	var keys []string
	for range 3 {
		task, err := alice.TaskPut(ctx, dir, spec.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, task.ID)
	}
	page, err := alice.Tasks(ctx, client.TaskFilter{Limit: 2})
	if err != nil || len(page.Tasks) != 2 || page.Tasks[0].Key != keys[2] || page.Tasks[1].Key != keys[1] || page.Next != keys[1] {
		t.Fatalf("first page: %+v %v", page, err)
	}
	page, err = alice.Tasks(ctx, client.TaskFilter{Limit: 2, Before: page.Next})
	if err != nil || len(page.Tasks) != 1 || page.Tasks[0].Key != keys[0] || page.Next != "" {
		t.Fatalf("last page: %+v %v", page, err)
	}
	if _, err := alice.Tasks(ctx, client.TaskFilter{All: true}); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("all by a client: %v", err)
	}

	was, err := alice.Cancel(ctx, keys[0], keys[0])
	if err != nil || was[0] != api.StateQueued || was[1] != api.StateCancelled {
		t.Fatalf("cancel twice: %v %v", was, err)
	}
	var ce *client.CancelError
	if _, err := bob.Cancel(ctx, keys[1]); !errors.As(err, &ce) || ce.Key != keys[1] || !errors.Is(err, client.ErrForbidden) {
		t.Errorf("cancel by bob: %v", err)
	}
	d, err := alice.TaskDetail(ctx, keys[0])
	if err != nil || d.State != api.StateCancelled || d.Queue != "default" || d.TimeFinish == "" {
		t.Errorf("detail of the cancelled task: %+v %v", d, err)
	}
	if _, err := alice.Result(ctx, keys[0], time.Second); !errors.Is(err, client.ErrCancelled) {
		t.Errorf("result of a cancelled task: %v", err)
	}
	clone, err := alice.Clone(ctx, keys[0])
	if err != nil || clone.ID == keys[0] || clone.Files["in.txt"].Reference == "" {
		t.Fatalf("clone: %+v %v", clone, err)
	}
	if d, err := alice.TaskDetail(ctx, clone.ID); err != nil || d.State != api.StateQueued {
		t.Errorf("the clone: %+v %v", d, err)
	}
}

// Execute waiting on a task someone cancels returns ErrCancelled at once,
// not when its wait runs out. The cancel may come before Execute's first
// long poll or during one; the server's TestCancelWakesWaiters checks
// that a waiting poll is woken.
func TestExecuteStopsWhenCancelled(t *testing.T) {
	g := startServer(t, nil)
	alice, other := g.as(t, "alice"), g.as(t, "alice")
	dir := writeTask(t, `{"image": "busybox", "args": ["true"]}`, nil)
	keys := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		_, err := alice.Execute(context.Background(), dir, filepath.Join(t.TempDir(), "r"), client.ExecuteOptions{
			Interval: time.Minute, // long polls of 10 s: only the cancel can end them early
			OnState: func(s client.State) {
				if s.Phase == "queued" {
					keys <- s.Key
				}
			},
		})
		done <- err
	}()
	key := <-keys
	if _, err := other.Cancel(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	cancelled := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, client.ErrCancelled) {
			t.Fatalf("Execute: %v, want ErrCancelled", err)
		}
		t.Logf("Execute returned %v after the cancel: %v", time.Since(cancelled), err)
	case <-time.After(8 * time.Second):
		t.Fatal("Execute still waits 8 s after the cancel")
	}
}
