package foreman

// Whole nodes against a real server: a foreman over a real worker (host
// runtime: tasks are host processes in their own namespaces and cgroups).
// They need root and cgroups (testenv via workertest.NewEnv).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
)

func shTask(script string, extra string) string {
	return `{"image": "host", "args": ["sh", "-c", ` + mustJSON(script) + `], "stdout": "out", "stderr": "err"` + extra + `}`
}

// Tasks run side by side on disjoint cores; inputs shared by several
// tasks are downloaded once; outputs come back.
func TestNodeRunsTasks(t *testing.T) {
	g := newGrid(t)
	n := newNode(t, g, "node", nil)
	input := "the judge's test input\n"
	var keys []string
	for i := range 4 {
		keys = append(keys, g.submit(shTask(
			`grep Cpus_allowed_list /proc/self/status | tr -d '\t'; cat in.txt; cut -d' ' -f1 /proc/uptime; sleep 0.5; cut -d' ' -f1 /proc/uptime; echo `+strconv.Itoa(i),
			`, "files": {"in.txt": null}, "limits": {"cpus": 1}`), map[string]string{"in.txt": input}))
	}
	type run struct {
		cores      string
		start, end float64
	}
	var runs []run
	for i, k := range keys {
		r, dir := g.result(k, 30*time.Second)
		out, _ := os.ReadFile(filepath.Join(dir, "out"))
		lines := strings.Split(string(out), "\n")
		if r.Status != spec.StatusOK || len(lines) < 5 || lines[1]+"\n" != input || lines[4] != strconv.Itoa(i) {
			errOut, _ := os.ReadFile(filepath.Join(dir, "err"))
			t.Fatalf("task %d: %s, out %q, err %q", i, r.Status, out, errOut)
		}
		if !slices.Contains(r.Tags, "test") {
			t.Errorf("result tags %v lack the node's", r.Tags)
		}
		if *r.Limits.CPUs != 1 || *r.Limits.Memory != 64<<20 {
			t.Errorf("limits %s: want cpus 1 as asked, memory 64M from the node's defaults", r.Limits)
		}
		x := run{cores: lines[0]}
		var err1, err2 error
		x.start, err1 = strconv.ParseFloat(lines[2], 64)
		x.end, err2 = strconv.ParseFloat(lines[3], 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("task %d: times %q, %q: %v %v", i, lines[2], lines[3], err1, err2)
		}
		runs = append(runs, x)
	}
	// Tasks that ran at the same time had different cores; with two slots
	// and two cores, some did run at the same time.
	overlapped := false
	for i := range runs {
		for j := i + 1; j < len(runs); j++ {
			if runs[i].start < runs[j].end && runs[j].start < runs[i].end {
				overlapped = true
				if runs[i].cores == runs[j].cores {
					t.Errorf("tasks %d and %d ran at the same time on %s", i, j, runs[i].cores)
				}
			}
		}
	}
	if len(n.Cores()) >= 2 && !overlapped {
		t.Errorf("no two tasks ran at the same time: %+v", runs)
	}
	if got := g.blobGets.Load(); got != 1 {
		t.Errorf("the shared input was downloaded %d times, want once", got)
	}
	if !n.Blobs().Has(sum([]byte(input))) {
		t.Error("the input is not in the blob cache")
	}
	// The server shows the node with the capacity it declares (extension
	// "nodes") beside its tags.
	seen, err := g.srv.Node(context.Background(), "node")
	if err != nil || seen.Capacity.Memory == nil || *seen.Capacity.Memory != 2<<30 || seen.Capacity.CPUs == nil ||
		int(*seen.Capacity.CPUs) != len(n.Cores()) || !slices.Equal(seen.Tags, []string{"test"}) || seen.LastDequeue == "" {
		t.Errorf("the server shows the node as %+v %v", seen, err)
	}
}

// A node with more slots than cores takes the next task as soon as a core
// frees, not when its long poll ends: with every core busy it asks for
// nothing (no task could fit), so the end of a task, not the server's
// answer, starts the next dequeue. The long polls here last a minute;
// the tasks, queued at once, all end well within it.
func TestNodeMoreSlotsThanCores(t *testing.T) {
	g := newGrid(t)
	newNode(t, g, "node", func(c *Config) {
		c.Cores = c.Cores[:1]
		c.Concurrency = 8
		c.Wait, c.BusyWait = time.Minute, time.Minute
	})
	var keys []string
	for i := range 3 {
		keys = append(keys, g.submit(shTask("echo "+strconv.Itoa(i), `, "limits": {"cpus": 1}`), nil))
	}
	for i, k := range keys {
		if r, _ := g.result(k, 20*time.Second); r.Status != spec.StatusOK {
			t.Fatalf("task %d: %s", i, r.Status)
		}
	}
}

// An exclusive task runs alone: the node starts nothing beside it and
// starts it only once the node is empty.
func TestNodeExclusive(t *testing.T) {
	g := newGrid(t)
	newNode(t, g, "node", nil)
	span := `date +%s.%N; sleep 0.4; date +%s.%N`
	a := g.submit(shTask(span, ""), nil)
	x := g.submit(shTask(span, `, "exclusive": true`), nil)
	b := g.submit(shTask(span, ""), nil)
	interval := func(key string) (float64, float64) {
		r, dir := g.result(key, 30*time.Second)
		out, _ := os.ReadFile(filepath.Join(dir, "out"))
		f := strings.Fields(string(out))
		if r.Status != spec.StatusOK || len(f) != 2 {
			t.Fatalf("task %s: %s %q", key, r.Status, out)
		}
		s, _ := strconv.ParseFloat(f[0], 64)
		e, _ := strconv.ParseFloat(f[1], 64)
		return s, e
	}
	as, ae := interval(a)
	xs, xe := interval(x)
	bs, be := interval(b)
	if xs < ae || (bs < xe && be > xs) {
		t.Errorf("the exclusive task [%.2f, %.2f] overlapped a [%.2f, %.2f] or b [%.2f, %.2f]", xs, xe, as, ae, bs, be)
	}
	// Not starved either: it starts soon after the node empties.
	if last := max(ae, min(be, xs)); xs-last > 3 {
		t.Errorf("the exclusive task started %.1f s after the node emptied", xs-last)
	}
}

// SIGTERM's drain: the node takes nothing more; running tasks finish and
// their results are posted; then Run returns ErrStopped.
func TestNodeDrain(t *testing.T) {
	g := newGrid(t)
	n := newNode(t, g, "node", nil)
	// Running, not only taken: a task taken but not yet started is handed
	// back by the drain (on a slow machine the second can lag).
	m1 := fmt.Sprintf("1.%d1", time.Now().UnixNano()%1000000)
	m2 := fmt.Sprintf("1.%d2", time.Now().UnixNano()%1000000)
	k1 := g.submit(shTask("sleep "+m1+"; echo one", ""), nil)
	k2 := g.submit(shTask("sleep "+m2+"; echo two", ""), nil)
	waitFor(t, "both tasks running", 10*time.Second, func() bool {
		return processes("sleep "+m1) > 0 && processes("sleep "+m2) > 0
	})
	start := time.Now()
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-n.ran; !errors.Is(err, ErrStopped) {
		t.Errorf("Run returned %v, want ErrStopped", err)
	}
	t.Logf("drained in %v", time.Since(start))
	for key, want := range map[string]string{k1: "one\n", k2: "two\n"} {
		ti := g.task(key)
		if !ti.HasResult {
			t.Fatalf("task %s has no result after the drain", key)
		}
		r, dir := g.result(key, time.Second)
		if out, _ := os.ReadFile(filepath.Join(dir, "out")); r.Status != spec.StatusOK || string(out) != want {
			t.Errorf("task %s: %s %q", key, r.Status, out)
		}
	}
	// Nothing is taken any more: no event would announce a take that
	// must not happen, so the test gives one a window to show itself.
	k3 := g.submit(shTask("true", ""), nil)
	time.Sleep(300 * time.Millisecond)
	if ti := g.task(k3); ti.AssigneeName != "" {
		t.Errorf("a drained node took %s", k3)
	}
}

// The second signal: running tasks are killed at once and handed back,
// without counting an attempt.
func TestNodeHardStopHandsBack(t *testing.T) {
	g := newGrid(t)
	n := newNode(t, g, "node", nil)
	marker := fmt.Sprintf("61.%d", time.Now().UnixNano()%1000000)
	key := g.submit(shTask("sleep "+marker, ""), nil)
	waitFor(t, "the task running", 10*time.Second, func() bool { return processes("sleep "+marker) > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := n.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the context's error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("hard stop took %v", d)
	}
	if c := processes("sleep " + marker); c != 0 {
		t.Errorf("%d task processes left after the hard stop", c)
	}
	ti := g.task(key)
	if ti.State.String() != "unassigned" || ti.Attempts != 0 || ti.HasResult {
		t.Errorf("task after the hard stop: %s, %d attempts, result %v; want queued, 0", ti.State, ti.Attempts, ti.HasResult)
	}
}

// A task the server takes back (its lease given to another node) is killed
// and its result not posted; the node keeps working.
func TestNodeLostTaskIsKilled(t *testing.T) {
	g := newGrid(t, leases(600*time.Millisecond))
	n := newNode(t, g, "node", func(c *Config) { c.Concurrency = 1 })
	marker := fmt.Sprintf("62.%d", time.Now().UnixNano()%1000000)
	key := g.submit(shTask("sleep "+marker, ""), nil)
	waitFor(t, "the task running", 10*time.Second, func() bool { return processes("sleep "+marker) > 0 })
	// The admin takes it back and another node gets it. The node is
	// drained meanwhile: once it learns of the loss its slot is free, and
	// it could take the task back before node2 asks (a slow machine did).
	// node2 never heartbeats: it takes the task with the long lease of a
	// node without heartbeats, so the task is not requeued under the test.
	if _, err := g.srv.SetNodeDrained(context.Background(), "node", true); err != nil {
		t.Fatal(err)
	}
	if keys, err := g.srv.Unassign(context.Background(), 0); err != nil || !slices.Equal(keys, []string{key}) {
		t.Fatalf("unassign: %v %v", keys, err)
	}
	other := g.client("node2")
	tasks, err := other.Dequeue(context.Background(), client.DequeueRequest{Concurrency: 1})
	if err != nil || len(tasks) != 1 || tasks[0].ID != key {
		t.Fatalf("node2's dequeue: %v %v", tasks, err)
	}
	if _, err := g.srv.SetNodeDrained(context.Background(), "node", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lost task killed", 5*time.Second, func() bool { return processes("sleep "+marker) == 0 })
	waitFor(t, "the node to forget the task", 5*time.Second, func() bool { return len(n.heldKeys()) == 0 })
	if ti := g.task(key); ti.HasResult || ti.AssigneeName != "node2" {
		t.Errorf("after the loss: result %v, assignee %s", ti.HasResult, ti.AssigneeName)
	}
	// The node goes on with other work.
	k2 := g.submit(shTask("echo still here", ""), nil)
	if r, _ := g.result(k2, 20*time.Second); r.Status != spec.StatusOK {
		t.Errorf("next task: %s", r.Status)
	}
}

// A task whose input cannot be brought (the server's copy is damaged: its
// bytes no longer match their hash) gets an SE result, never silence.
func TestNodeInputFailureIsSE(t *testing.T) {
	g := newGrid(t)
	content := "input that will be damaged\n"
	h := sum([]byte(content))
	// Damage the blob before any node sees the task.
	key := g.submit(shTask("cat in.txt", `, "files": {"in.txt": null}, "requires": ["later"]`), map[string]string{"in.txt": content})
	blob := filepath.Join(g.cfg.DataDir, server.BlobsDir, h[:2], h[2:4], h)
	if err := os.WriteFile(blob, []byte("tampered!!"), 0o644); err != nil {
		t.Fatalf("damaging %s: %v", blob, err)
	}
	newNode(t, g, "node", func(c *Config) { c.Tags = append(c.Tags, "later") })
	r, _ := g.result(key, 30*time.Second)
	if r.Status != spec.StatusSE || r.Result != nil {
		t.Errorf("task with a damaged input: %s, exit %v; want SE without exit code", r.Status, r.Result)
	}
}

// A result finished while the server is down is posted once it is back;
// the node's heartbeats and dequeues resume.
func TestNodeSurvivesServerRestart(t *testing.T) {
	g := newGrid(t, leases(10*time.Second))
	cl, failed := g.resultClient("node")
	started := make(chan struct{}, 1)
	newNode(t, g, "node", func(c *Config) {
		c.Client = cl
		c.Executor = announcing{c.Executor, started}
	})
	key := g.submit(shTask("sleep 1; echo done", ""), nil)
	// Stopped once the node runs the task, not merely once the server
	// assigned it: a dequeue answer still on its way would be lost.
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the node did not start the task within 30s")
	}
	g.stop()
	waitFor(t, "the task to end and its post to fail twice", 20*time.Second, func() bool { return failed.Load() >= 2 })
	g.start()
	r, dir := g.result(key, 20*time.Second)
	if out, _ := os.ReadFile(filepath.Join(dir, "out")); r.Status != spec.StatusOK || string(out) != "done\n" {
		t.Errorf("result after the restart: %s %q", r.Status, out)
	}
	if ti := g.task(key); ti.Attempts != 1 {
		t.Errorf("attempts %d, want 1: the task ran once", ti.Attempts)
	}
	k2 := g.submit(shTask("echo after", ""), nil)
	if r, _ := g.result(k2, 20*time.Second); r.Status != spec.StatusOK {
		t.Errorf("task after the restart: %s", r.Status)
	}
}

// Against a server that offers none of our extensions (Kolejka's): the
// node polls every Interval instead of waiting, sends no extension keys,
// neither heartbeats nor releases, and still runs tasks and posts results.
func TestNodeAgainstKolejkaServer(t *testing.T) {
	g := newGrid(t)
	g.plain = true
	n := newNode(t, g, "node", func(c *Config) { c.Interval = 300 * time.Millisecond })
	if n.cl.Settings().Has("long_poll") {
		t.Fatal("the extensions are not hidden")
	}
	start := time.Now()
	key := g.submit(shTask("sleep 0.3; echo plain", ""), nil)
	r, dir := g.result(key, 20*time.Second)
	if out, _ := os.ReadFile(filepath.Join(dir, "out")); r.Status != spec.StatusOK || string(out) != "plain\n" {
		t.Errorf("task: %s %q", r.Status, out)
	}
	time.Sleep(time.Second) // the rate under test: polls over a second of idleness
	polls := g.dequeues.Load()
	elapsed := time.Since(start)
	// One dequeue per interval (and one right after each task), not a
	// busy loop; none waiting on the server.
	if max := int32(elapsed/(300*time.Millisecond)) + 4; polls < 2 || polls > max {
		t.Errorf("%d dequeues in %v with a 300 ms interval", polls, elapsed)
	}
	if g.extKeys.Load() != 0 || g.extended.Load() != 0 {
		t.Errorf("%d extension keys in dequeues, %d heartbeat/release requests to a server without the extensions", g.extKeys.Load(), g.extended.Load())
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// announcing is an Executor that says when a task starts to run.
type announcing struct {
	Executor
	started chan<- struct{}
}

func (a announcing) Execute(ctx context.Context, taskDir, resultDir string, opt worker.Options) (*spec.Result, error) {
	select {
	case a.started <- struct{}{}:
	default:
	}
	return a.Executor.Execute(ctx, taskDir, resultDir, opt)
}

// slowTearDown is an Executor whose runs take hold after their result is
// published, as a container's tear-down does, until hold closes.
type slowTearDown struct {
	Executor
	hold <-chan struct{}
}

func (s slowTearDown) Execute(ctx context.Context, taskDir, resultDir string, opt worker.Options) (*spec.Result, error) {
	res, err := s.Executor.Execute(ctx, taskDir, resultDir, opt)
	<-s.hold
	return res, err
}

// The owner gets a result as soon as the worker has published it: the
// container's tear-down goes on meanwhile, and the task's cores are free
// only once it is done.
func TestNodePostsBeforeTearDown(t *testing.T) {
	g := newGrid(t)
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	n := newNode(t, g, "node", func(c *Config) { c.Executor = slowTearDown{c.Executor, hold} })
	t.Cleanup(release) // before the node's shutdown, which waits for the run
	key := g.submit(shTask("echo early", ""), nil)
	r, dir := g.result(key, 20*time.Second) // before hold closes
	if out, _ := os.ReadFile(filepath.Join(dir, "out")); r.Status != spec.StatusOK || string(out) != "early\n" {
		t.Errorf("task: %s %q", r.Status, out)
	}
	running := func() int {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.ledger.running
	}
	if r := running(); r != 1 {
		t.Errorf("%d tasks on the ledger while the tear-down goes on, want 1", r)
	}
	release()
	waitFor(t, "the task's cores free again", 10*time.Second, func() bool { return running() == 0 })
}

// A node whose free room fits no queued task takes one as soon as a
// running task's end makes room, not at the end of its long poll: its
// result post ends the poll, and the node asks again with the room.
func TestNodeRoomAfterResult(t *testing.T) {
	g := newGrid(t)
	newNode(t, g, "node", func(c *Config) {
		c.Concurrency = 4
		c.Wait, c.BusyWait = time.Minute, time.Minute
	})
	// After a, 512M is free: b (1G) does not fit until a ends.
	a := g.submit(shTask("sleep 0.5; echo a", `, "limits": {"memory": "1536M"}`), nil)
	b := g.submit(shTask("echo b", `, "limits": {"memory": "1G"}`), nil)
	for _, k := range []string{a, b} {
		if r, _ := g.result(k, 20*time.Second); r.Status != spec.StatusOK {
			t.Fatalf("task %s: %s", k, r.Status)
		}
	}
}
