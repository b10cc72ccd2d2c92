package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/spec"
)

// A node killed with -9 in the middle of a task: the server takes the task
// back when the node's lease lapses, the other node runs it, and it has
// exactly one result — the other node's. The dead node's late result is
// refused. Restarted, the killed node sweeps the container its dead self
// left running, and its download folders.
func TestGridForemanKilledMidTask(t *testing.T) {
	g := newGrid(t, "--lease", "1s")
	g.startForeman("a", pin(0))
	g.startForeman("b", pin(1))

	marker := fmt.Sprintf("30.%06d", time.Now().UnixNano()%1000000)
	key := g.Put(gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sleep", "`+marker+`"], "limits": {"time": "3s"}}`))
	var holder string
	gridtest.WaitFor(t, "the task running", 20*time.Second, func() bool {
		a, _ := g.TaskInfo(key)["assignee"].(string)
		holder = a
		return a != "" && processes("sleep "+marker) > 0
	})
	other := map[string]string{"a": "b", "b": "a"}[holder]
	t.Logf("node %s runs the task: killing it", holder)
	killed := g.Nodes[holder]
	killedAt := time.Now()
	killed.P.Kill9()
	orphan := processes("sleep "+marker) > 0
	t.Logf("the dead foreman's container outlives it: %v", orphan)

	dir, err := g.result(key, 30*time.Second)
	if err != nil {
		t.Fatalf("no result after node %s was killed: %v", holder, err)
	}
	t.Logf("result %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	res, err := spec.LoadResult(dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != spec.StatusTLE {
		t.Errorf("status %s, want TLE (the sleeper outlives its 3 s)", res.Status)
	}
	if !contains(res.Tags, "node:"+other) || contains(res.Tags, "node:"+holder) {
		t.Errorf("result tags %v: want node %s's, the one still alive", res.Tags, other)
	}
	info := g.TaskInfo(key)
	if info["resolved"] != true || info["attempts"] != float64(2) {
		t.Errorf("task after the failover: resolved %v, attempts %v; want resolved at the second attempt", info["resolved"], info["attempts"])
	}
	st, err := g.Alice.Stats(context.Background())
	if err != nil || st.TaskResolvedCount != 1 || st.TaskCount != 1 {
		t.Errorf("queue stats %+v (%v): want one task, resolved once", st, err)
	}

	// The dead node's late result (it had the task first): refused, the
	// stored result unchanged.
	dead, err := client.New(context.Background(), client.Config{Server: "http://" + g.Addr, Token: g.Tokens[holder]})
	if err != nil {
		t.Fatal(err)
	}
	late := t.TempDir()
	os.WriteFile(filepath.Join(late, "stdout"), []byte("late\n"), 0o644)
	zero := 0
	_, err = dead.ResultPost(context.Background(), late, &spec.Result{ID: key, Tags: []string{"node:" + holder}, Result: &zero,
		Status: spec.StatusOK, Stdout: "stdout", Files: map[string]spec.File{"stdout": {Path: "stdout"}}})
	var se *client.ServerError
	if !errors.As(err, &se) || !strings.Contains(se.Message, "already has a result") {
		t.Errorf("the dead node's late result: %v; want refused", err)
	}
	if again, err := g.Alice.Result(context.Background(), key, 0); err != nil || again.Status != spec.StatusTLE {
		t.Errorf("stored result after the late post: %v %v", again, err)
	}

	// The killed node comes back: its dead run's container is swept, its
	// download folders cleared, and it takes work again.
	g.startForeman(holder, pin(map[string]int{"a": 0, "b": 1}[holder]))
	if n := processes("sleep " + marker); n != 0 {
		t.Errorf("%d processes of the dead run left after the restart", n)
	}
	if entries, _ := os.ReadDir(filepath.Join(killed.Temp, "jobs")); len(entries) != 0 {
		t.Errorf("download folders of the dead foreman left: %d", len(entries))
	}
	// Who swept the dead run is not asserted: the node's run registry is
	// the host's (/run/kolejka), and another worker on the host (a test of
	// another package running meanwhile) may sweep it before the restarted
	// foreman does. That it was swept is: no process of it is left (above).
	g.Nodes[other].P.Signal(syscall.SIGTERM) // drain the other node: the next task must go to the restarted one
	if code, ok := g.Nodes[other].P.Wait(20 * time.Second); !ok || code != 0 {
		t.Fatalf("draining node %s: exit %d (ended %v)", other, code, ok)
	}
	key2 := g.Put(gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["true"], "limits": {"time": "10s"}}`))
	if dir, err := g.result(key2, 20*time.Second); err != nil {
		t.Errorf("the restarted node takes no work: %v", err)
	} else if r, _ := spec.LoadResult(dir); r == nil || !contains(r.Tags, "node:"+holder) || r.Status != spec.StatusOK {
		t.Errorf("task after the restart: %+v", r)
	}
}

// The server killed with -9 while tasks run and wait, then started again on
// the same folder and port: the nodes reconnect (heartbeats, result posts
// and dequeues retry), every task completes exactly once, nothing is lost.
func TestGridServerRestart(t *testing.T) {
	g := newGrid(t, "--lease", "20s")
	g.startForeman("a", pin(0))
	g.startForeman("b", pin(1))

	var keys []string
	for i := range 4 {
		keys = append(keys, g.Put(gridtest.WriteTask(t, fmt.Sprintf(
			`{"image": "kolejka-test:latest", "args": ["sh", "-c", "sleep 2; echo task %d"], "limits": {"time": "20s"}, "stdout": "out"}`, i))))
	}
	var running []string
	gridtest.WaitFor(t, "two tasks running", 20*time.Second, func() bool {
		running = running[:0]
		for _, k := range keys {
			if a, _ := g.TaskInfo(k)["assignee"].(string); a != "" {
				running = append(running, k)
			}
		}
		return len(running) == 2
	})
	g.Server.Kill9()
	// The running tasks end meanwhile: their results wait in the nodes'
	// job folders (jobs/KEY-*/result/) while their posts retry.
	gridtest.WaitFor(t, "the running tasks' results to wait for the server", 30*time.Second, func() bool {
		for _, k := range running {
			waiting := false
			for _, n := range g.Nodes {
				found, _ := filepath.Glob(filepath.Join(n.Temp, "jobs", k+"-*", "result", spec.ResultFile))
				waiting = waiting || len(found) > 0
			}
			if !waiting {
				return false
			}
		}
		return true
	})
	g.StartServer()

	for i, k := range keys {
		dir, err := g.result(k, 40*time.Second)
		if err != nil {
			t.Fatalf("task %d: no result after the restart: %v", i, err)
		}
		out, _ := os.ReadFile(filepath.Join(dir, "out"))
		r, _ := spec.LoadResult(dir)
		if r == nil || r.Status != spec.StatusOK || string(out) != fmt.Sprintf("task %d\n", i) {
			t.Errorf("task %d: %+v, out %q", i, r, out)
		}
		if info := g.TaskInfo(k); info["attempts"] != float64(1) {
			t.Errorf("task %d ran %v times, want once", i, info["attempts"])
		}
	}
	for _, n := range g.Nodes {
		if len(gridtest.LogLines(n.Log, "result posted")) == 0 {
			t.Errorf("node %s posted nothing", n.Name)
		}
	}
	// New work after the restart goes through as usual.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hello := filepath.Join(t.TempDir(), "hello")
	if _, errOut, code := g.KolejkaClient(ctx, "execute", gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["true"]}`), hello); code != 0 {
		t.Errorf("execute after the restart: exit %d: %s", code, errOut)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
