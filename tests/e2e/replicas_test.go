package e2e

// Several kolejka-server replicas on one PostgreSQL database and one S3
// bucket, behind a round-robin proxy, behave as one server, and carry on
// when one of them is killed.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

// replicaConf is the [server] section of replicas sharing a new database
// and a new bucket.
func replicaConf(t *testing.T) (conf, db string) {
	db = pgtest.Database(t)
	b := s3test.Start(t).Bucket(t)
	return fmt.Sprintf("[server]\ndatabase = %s\nblobs = %s\nblobs_access_key = %s\nblobs_secret_key = %s\n",
		db, s3test.URL(b), b.AccessKey, b.SecretKey), db
}

// Three replicas, two nodes, a burst of tasks (each with an input file and
// an output of its own) and workflows through the proxy; one replica is
// killed with SIGKILL in the middle of the burst. Every task accepted gets
// exactly one result, its own, with its files; the workflows finish; the
// other replicas served requests before and after the kill.
func TestReplicasSurviveAKilledReplica(t *testing.T) {
	bin := bins(t)
	conf, db := replicaConf(t)
	g := &grid{gridtest.NewGrid(t, bin, gridtest.GridOptions{ServerConf: conf, Replicas: 3, OutputLimit: OutputLimit})}
	g.StartForeman("a", nil)
	g.StartForeman("b", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	const tasks = 24
	keys := make([]string, tasks)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	submit := func(i int) {
		defer wg.Done()
		dir := gridtest.WriteTask(t, `{`+limits+`, "args": ["sh", "-c", "cat in.txt; echo done"], "stdout": "out.txt", "files": {"in.txt": "in.txt"}}`,
			"in.txt", fmt.Sprintf("task %d\n", i))
		// A put that reached the killed replica may fail: the client is
		// told, and puts again (a task it was not told of is not accepted).
		for try := 0; try < 3; try++ {
			out, errOut, code := g.KolejkaClient(ctx, "task", "put", dir)
			if code == 0 {
				keys[i] = strings.TrimSpace(out)
				return
			}
			mu.Lock()
			failed = append(failed, fmt.Sprintf("put %d (try %d): exit %d: %s", i, try, code, errOut))
			mu.Unlock()
		}
	}
	for i := range tasks / 2 {
		wg.Add(1)
		go submit(i)
	}
	// Workflows too: a run's steps advance in whichever replica takes
	// their results.
	wfDir := writeFolder(t, map[string]string{
		"kolejka_workflow.json": `{"tasks": {
			"first":  {"task": "step", "items": ["1", "2"]},
			"second": {"task": "join", "after": ["first"], "inputs": {"prev": "first:out.txt"}}
		}}`,
		"step/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "echo step {item}"], "stdout": "out.txt"}`,
		"join/kolejka_task.json": `{` + limits + `, "args": ["sh", "-c", "cat prev/1 prev/2"], "stdout": "out.txt"}`,
	})
	var runs []string
	for range 2 {
		key, errOut, code := g.KolejkaClient(ctx, "workflow", "put", wfDir)
		if code != 0 {
			t.Fatalf("workflow put: exit %d: %s", code, errOut)
		}
		runs = append(runs, strings.TrimSpace(key))
	}
	wg.Wait()
	before := g.Proxy.Served[1].Load()
	g.Replicas[1].P.Kill9()
	for i := tasks / 2; i < tasks; i++ {
		wg.Add(1)
		go submit(i)
	}
	wg.Wait()
	for i, k := range keys {
		if k == "" {
			t.Fatalf("task %d was never accepted: %v", i, failed)
		}
	}
	if len(failed) > 0 {
		t.Logf("puts retried after the kill: %v", failed)
	}

	for i, key := range keys {
		out := filepath.Join(t.TempDir(), "r")
		var errOut string
		var code int
		for try := 0; try < 3; try++ {
			if _, errOut, code = g.KolejkaClient(ctx, "result", "get", "--wait", "120", key, out); code == 0 {
				break
			}
		}
		if code != 0 {
			t.Fatalf("result of task %d (%s): exit %d: %s", i, key, code, errOut)
		}
		b, err := os.ReadFile(filepath.Join(out, "out.txt"))
		if want := fmt.Sprintf("task %d\ndone\n", i); err != nil || string(b) != want {
			t.Errorf("task %d's output %q (%v), want %q", i, b, err, want)
		}
		info := g.TaskInfo(key)
		if info["resolved"] != true {
			t.Errorf("task %d: %v, want resolved", i, info)
		}
	}
	for _, run := range runs {
		out := filepath.Join(t.TempDir(), "w")
		if _, errOut, code := g.KolejkaClient(ctx, "workflow", "get", run, out); code != 0 {
			t.Errorf("workflow %s: exit %d: %s", run, code, errOut)
			continue
		}
		if b, err := os.ReadFile(filepath.Join(out, "second", "out.txt")); err != nil || string(b) != "step 1\nstep 2\n" {
			t.Errorf("workflow %s's last step: %q (%v), want both items' outputs", run, b, err)
		}
	}
	// Exactly one result per task, in the shared database: every task
	// (the burst's and the workflows' steps) done, with one result row.
	sqldb, err := store.OpenSQL(db)
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	var all, results, open int
	if err := sqldb.QueryRow(`SELECT COUNT(*) FROM tasks`).Scan(&all); err != nil {
		t.Fatal(err)
	}
	if err := sqldb.QueryRow(`SELECT COUNT(*) FROM results`).Scan(&results); err != nil {
		t.Fatal(err)
	}
	if err := sqldb.QueryRow(`SELECT COUNT(*) FROM tasks WHERE state <> 2`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if want := tasks + len(runs)*3; all != want || results != want || open != 0 {
		t.Errorf("%d tasks, %d results, %d not done; want %d, %d, 0", all, results, open, want, want)
	}
	for i := range g.Replicas {
		if i != 1 && g.Proxy.Served[i].Load() == 0 {
			t.Errorf("replica %d served nothing", i)
		}
	}
	if before == 0 {
		t.Error("the killed replica served nothing before the kill: the test killed an idle one")
	}
	if after := g.Proxy.Served[1].Load(); after != before {
		t.Errorf("the killed replica served %d requests after its kill", after-before)
	}
}
