package e2e

// The load of the replica tests: a burst of tasks and workflows through the
// proxy, put in two halves around whatever happens to one replica, and the
// checks that every one of them came through it.

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	blobss3 "github.com/kolejka-go/kolejka/internal/server/blobs/s3"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
)

// burstTasks is how many tasks a burst puts, half before and half after
// the event.
const burstTasks = 24

// sharedConf is the [server] section of replicas sharing database db and
// bucket b.
func sharedConf(db string, b blobss3.Options) string {
	return fmt.Sprintf("[server]\ndatabase = %s\nblobs = %s\nblobs_access_key = %s\nblobs_secret_key = %s\n",
		db, s3test.URL(b), b.AccessKey, b.SecretKey)
}

// burst is tasks (each with an input file and an output of its own) and
// workflows (whose steps advance in whichever replica takes their
// results) put through the grid's proxy.
type burst struct {
	g    *grid
	ctx  context.Context
	keys []string // the tasks' keys, by number; "" until accepted
	runs []string // the workflow runs' keys
	wg   sync.WaitGroup
	mu   sync.Mutex
	// failed lists the puts that failed and were retried.
	failed []string
}

// startBurst puts the first half of the tasks and the workflows, and
// returns once they are all accepted.
func startBurst(ctx context.Context, t *testing.T, g *grid) *burst {
	b := &burst{g: g, ctx: ctx, keys: make([]string, burstTasks)}
	b.put(t, 0, burstTasks/2)
	wfDir := writeFolder(t, map[string]string{
		"kolejka_workflow.json": `{"tasks": {
			"first":  {"task": "step", "items": ["1", "2"]},
			"second": {"task": "join", "after": ["first"], "inputs": {"prev": "first:out.txt"}}
		}}`,
		"step/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "echo step {item}"], "stdout": "out.txt"}`,
		"join/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "cat prev/1 prev/2"], "stdout": "out.txt"}`,
	})
	for range 2 {
		key, errOut, code := g.KolejkaClient(ctx, "workflow", "put", wfDir)
		if code != 0 {
			t.Fatalf("workflow put: exit %d: %s", code, errOut)
		}
		b.runs = append(b.runs, strings.TrimSpace(key))
	}
	b.wg.Wait()
	return b
}

// put starts putting tasks number from up to to, each in a goroutine of
// its own.
func (b *burst) put(t *testing.T, from, to int) {
	for i := from; i < to; i++ {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			dir := gridtest.WriteTask(t, `{`+limits+`, "args": ["sh", "-c", "cat in.txt; echo done"], "stdout": "out.txt", "files": {"in.txt": "in.txt"}}`,
				"in.txt", fmt.Sprintf("task %d\n", i))
			// A put that reached the replica killed or cut may fail (the
			// proxy's 502 once its connection fails or times out): the
			// client is told, and puts again (a task it was not told of
			// is not accepted).
			for try := 0; try < 3; try++ {
				out, errOut, code := b.g.KolejkaClient(b.ctx, "task", "put", dir)
				if code == 0 {
					b.keys[i] = strings.TrimSpace(out)
					return
				}
				b.mu.Lock()
				b.failed = append(b.failed, fmt.Sprintf("put %d (try %d): exit %d: %s", i, try, code, errOut))
				b.mu.Unlock()
			}
		}()
	}
}

// putRest starts putting the second half of the tasks.
func (b *burst) putRest(t *testing.T) { b.put(t, burstTasks/2, burstTasks) }

// wait waits for the puts under way, and fails the test unless every task
// was accepted (after retries, which it logs).
func (b *burst) wait(t *testing.T) {
	b.wg.Wait()
	for i, k := range b.keys {
		if k == "" {
			t.Fatalf("task %d was never accepted: %v", i, b.failed)
		}
	}
	if len(b.failed) > 0 {
		t.Logf("puts retried: %v", b.failed)
	}
}

// check waits for every task's result and every workflow, and checks that
// each task got exactly one result, its own, with its files, and that the
// workflows finished; that every replica but stopped served requests, and
// that stopped answered some requests sent before the event (at) and none
// sent after it.
func (b *burst) check(t *testing.T, db *sql.DB, stopped int, at time.Time, event string) {
	t.Helper()
	g := b.g
	for i, key := range b.keys {
		out := filepath.Join(t.TempDir(), "r")
		var errOut string
		var code int
		for try := 0; try < 3; try++ {
			if _, errOut, code = g.KolejkaClient(b.ctx, "result", "get", "--wait", "120", key, out); code == 0 {
				break
			}
		}
		if code != 0 {
			t.Fatalf("result of task %d (%s): exit %d: %s", i, key, code, errOut)
		}
		data, err := os.ReadFile(filepath.Join(out, "out.txt"))
		if want := fmt.Sprintf("task %d\ndone\n", i); err != nil || string(data) != want {
			t.Errorf("task %d's output %q (%v), want %q", i, data, err, want)
		}
		if info := g.TaskInfo(key); info["resolved"] != true {
			t.Errorf("task %d: %v, want resolved", i, info)
		}
	}
	for _, run := range b.runs {
		out := filepath.Join(t.TempDir(), "w")
		if _, errOut, code := g.KolejkaClient(b.ctx, "workflow", "get", run, out); code != 0 {
			t.Errorf("workflow %s: exit %d: %s", run, code, errOut)
			continue
		}
		if data, err := os.ReadFile(filepath.Join(out, "second", "out.txt")); err != nil || string(data) != "step 1\nstep 2\n" {
			t.Errorf("workflow %s's last step: %q (%v), want both items' outputs", run, data, err)
		}
	}
	// Exactly one result per task, in the shared database: every task
	// (the burst's and the workflows' steps) done, with one result row.
	var all, results, open int
	if err := db.QueryRow(`SELECT COUNT(*) FROM tasks`).Scan(&all); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM results`).Scan(&results); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM tasks WHERE state <> 2`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if want := burstTasks + len(b.runs)*3; all != want || results != want || open != 0 {
		t.Errorf("%d tasks, %d results, %d not done; want %d, %d, 0", all, results, open, want, want)
	}
	for i := range g.Replicas {
		if i != stopped && g.Proxy.Served[i].Load() == 0 {
			t.Errorf("replica %d served nothing", i)
		}
	}
	before, after := g.Proxy.Answered(stopped, at)
	if before == 0 {
		t.Errorf("replica %d served nothing before the %s: the test stopped an idle one", stopped, event)
	}
	if after != 0 {
		t.Errorf("replica %d answered %d requests sent after the %s", stopped, after, event)
	}
}
