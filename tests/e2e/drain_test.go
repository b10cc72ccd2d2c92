package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/spec"
)

// SIGTERM drains a node: its running task finishes and its result is
// posted, then it exits 0. A second signal stops it at once: the running
// task is killed and handed back (the release extension, no attempt
// counted), and another node runs it.
func TestGridForemanSignals(t *testing.T) {
	g := newGrid(t, "--lease", "20s")
	a := g.startForeman("a", pin(0))

	key := g.Put(gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "sleep 1.5; echo finished"], "limits": {"time": "10s"}, "stdout": "out"}`))
	// Taken by the node, not only assigned by the server: a signal
	// between the two cuts the dequeue's answer short, and the task then
	// comes back only when its lease lapses (loop.go).
	if !a.P.Logged(`msg="task taken" task=`+key, 20*time.Second) {
		t.Fatalf("node a did not take the task; log:\n%s", gridtest.Tail(a.Log))
	}
	a.P.Signal(syscall.SIGTERM)
	queued := g.Put(gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["true"]}`))
	code, ended := a.P.Wait(30 * time.Second)
	if !ended || code != 0 {
		t.Fatalf("drain: ended %v, exit %d; want 0", ended, code)
	}
	dir, err := g.result(key, 0)
	if err != nil {
		t.Fatalf("no result after the drain: %v", err)
	}
	if out, _ := os.ReadFile(filepath.Join(dir, "out")); string(out) != "finished\n" {
		t.Errorf("drained task's output %q", out)
	}
	if info := g.TaskInfo(queued); info["assignee"] != nil || info["resolved"] != false {
		t.Errorf("a task submitted during the drain was taken: %v", info)
	}

	// Second signal: stop now.
	a = g.startForeman("a", pin(0)) // takes the queued task first
	if _, err := g.result(queued, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	long := g.Put(gridtest.WriteTask(t, `{"image": "kolejka-test:latest", "args": ["sh", "-c", "sleep 2; echo second try"], "limits": {"time": "10s"}, "stdout": "out"}`))
	if !a.P.Logged(`msg="task taken" task=`+long, 20*time.Second) {
		t.Fatalf("node a did not take the task; log:\n%s", gridtest.Tail(a.Log))
	}
	a.P.Signal(syscall.SIGTERM)
	if !a.P.Logged("draining", 10*time.Second) { // the second signal must find it draining
		t.Fatalf("the foreman did not start draining; log:\n%s", gridtest.Tail(a.Log))
	}
	stopped := time.Now()
	a.P.Signal(syscall.SIGINT)
	code, ended = a.P.Wait(15 * time.Second)
	if !ended || code != 1 {
		t.Fatalf("forced stop: ended %v, exit %d; want 1", ended, code)
	}
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("forced stop took %v", d)
	}
	info := g.TaskInfo(long)
	if info["resolved"] != false || info["attempts"] != float64(0) || info["assignee"] != nil {
		t.Errorf("after the forced stop: %v; want back in the queue with no attempt counted", info)
	}
	g.startForeman("b", pin(1))
	dir, err = g.result(long, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := spec.LoadResult(dir)
	out, _ := os.ReadFile(filepath.Join(dir, "out"))
	if res == nil || res.Status != spec.StatusOK || string(out) != "second try\n" || !contains(res.Tags, "node:b") {
		t.Errorf("the handed-back task on node b: %+v, out %q", res, out)
	}
	if info := g.TaskInfo(long); info["attempts"] != float64(1) {
		t.Errorf("attempts %v, want 1: the forced stop's hand-back is not counted", info["attempts"])
	}
}
