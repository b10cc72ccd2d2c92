package foreman

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/internal/clock"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
)

// unusedExecutor is the executor of foremen whose tests post results by
// hand: running a task is a test failure.
type unusedExecutor struct{ t testing.TB }

func (e unusedExecutor) Execute(context.Context, string, string, worker.Options) (*spec.Result, error) {
	e.t.Error("a task was executed")
	return nil, errors.New("no executor in this test")
}

// syncBuffer is a log sink read by the test while the foreman writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// takeByHand makes a foreman that runs nothing and takes the one queued
// task as its loop would, returning the job.
func takeByHand(t *testing.T, g *grid, logs *syncBuffer) (*Foreman, *job) {
	t.Helper()
	f, err := New(Config{
		Client:   g.client("node"),
		Executor: unusedExecutor{t},
		Dir:      t.TempDir(),
		Cores:    []int{0},
		Retry:    Retry{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, GiveUp: 20 * time.Second},
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Shutdown(context.Background()) })
	tasks, err := f.cl.Dequeue(context.Background(), client.DequeueRequest{Concurrency: 1, Heartbeat: true})
	if err != nil || len(tasks) != 1 {
		t.Fatalf("dequeue: %v %v", tasks, err)
	}
	j := f.newJob(tasks[0])
	f.jobs[j.key] = j
	if err := os.MkdirAll(j.resultDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	return f, j
}

func okResult(t *testing.T, j *job, out string, code int) *spec.Result {
	t.Helper()
	if err := os.WriteFile(filepath.Join(j.resultDir(), "out"), []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	status := spec.StatusOK
	if code != 0 {
		status = spec.StatusRE
	}
	return &spec.Result{ID: j.key, Tags: []string{"test"}, Result: &code, Status: status, Stdout: "out",
		Files: map[string]spec.File{"out": {Path: "out"}}}
}

// A result posted while the server is down is retried until it is back,
// and arrives once. Posting it again (a retry whose answer was lost) is
// answered with the stored result; a different result for a task that has
// one is dropped quietly (another node's came first), and no SE is posted
// over it.
func TestPostSurvivesServerRestart(t *testing.T) {
	g := newGrid(t, leases(time.Minute))
	key := g.submit(`{"image": "x", "args": ["true"], "stdout": "out"}`, nil)
	logs := &syncBuffer{}
	f, j := takeByHand(t, g, logs)
	res := okResult(t, j, "hello\n", 0)

	cl, failed := g.resultClient("node")
	f.cl = cl
	g.stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.post(j, res)
	}()
	// Three failed attempts: the post is retrying, not giving up.
	limit := time.After(30 * time.Second)
	for failed.Load() < 3 {
		select {
		case <-done:
			t.Fatalf("post returned while the server was down; log:\n%s", logs)
		case <-limit:
			t.Fatalf("the post made %d attempts in 30 s; log:\n%s", failed.Load(), logs)
		case <-time.After(10 * time.Millisecond): // the count has no announcement: poll it
		}
	}
	g.start()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("post did not finish after the server came back; log:\n%s", logs)
	}
	r, dir := g.result(key, 5*time.Second)
	if data, _ := os.ReadFile(filepath.Join(dir, "out")); r.Status != spec.StatusOK || string(data) != "hello\n" {
		t.Fatalf("stored result %s with out %q", r.Status, data)
	}
	if len(f.heldKeys()) != 0 {
		t.Errorf("the node still holds %v after posting", f.heldKeys())
	}

	// The replay: answered OK with the stored result.
	f.jobs[j.key] = j
	f.post(j, res)
	if n := strings.Count(logs.String(), "result posted"); n != 2 {
		t.Errorf("%d 'result posted' lines, want 2 (the first post and its replay); log:\n%s", n, logs)
	}
	// Another result: refused as the task has one; dropped, no SE.
	f.jobs[j.key] = j
	f.post(j, okResult(t, j, "different\n", 1))
	if !strings.Contains(logs.String(), "already has another result") || strings.Contains(logs.String(), "SE result instead") {
		t.Errorf("a second, different result was not dropped quietly; log:\n%s", logs)
	}
	r, dir = g.result(key, 5*time.Second)
	if data, _ := os.ReadFile(filepath.Join(dir, "out")); r.Status != spec.StatusOK || string(data) != "hello\n" {
		t.Errorf("the stored result changed: %s, out %q", r.Status, data)
	}
}

// A result the server cannot take within Retry.GiveUp (by the foreman's
// clock) is given up: the node lets the task go, and the server takes it
// back when its lease lapses, rather than the node retrying forever.
func TestPostGivesUp(t *testing.T) {
	g := newGrid(t, leases(time.Minute))
	key := g.submit(`{"image": "x", "args": ["true"], "stdout": "out"}`, nil)
	logs := &syncBuffer{}
	f, j := takeByHand(t, g, logs)
	clk := clock.NewFake(time.Now())
	f.cfg.Clock = clk
	cl, failed := g.resultClient("node")
	f.cl = cl
	res := okResult(t, j, "hello\n", 0)
	g.stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.post(j, res)
	}()
	waitFor(t, "three failed attempts", 30*time.Second, func() bool { return failed.Load() >= 3 })
	select {
	case <-done:
		t.Fatalf("the post gave up before Retry.GiveUp; log:\n%s", logs)
	default:
	}
	clk.Advance(f.cfg.Retry.GiveUp + time.Second)
	select {
	case <-done:
	case <-time.After(f.cfg.Retry.GiveUp / 2): // by the system's clock it would give up only later
		t.Fatalf("the post still retries past Retry.GiveUp; log:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "unable to post the result") {
		t.Errorf("log:\n%s", logs)
	}
	if len(f.heldKeys()) != 0 {
		t.Errorf("the node still holds %v after giving up", f.heldKeys())
	}
	g.start()
	if ti := g.task(key); ti.HasResult {
		t.Errorf("a result given up on reached the server")
	}
}

// A result the server refuses (here: a file named like the result file) is
// replaced by an SE result: the owner hears of the failure.
func TestPostRefusedBecomesSE(t *testing.T) {
	g := newGrid(t)
	key := g.submit(`{"image": "x", "args": ["true"]}`, nil)
	logs := &syncBuffer{}
	f, j := takeByHand(t, g, logs)
	res := okResult(t, j, "x", 0)
	res.Files = map[string]spec.File{spec.ResultFile: {Path: "out"}}
	f.post(j, res)
	r, _ := g.result(key, 5*time.Second)
	if r.Status != spec.StatusSE || r.Result != nil || len(r.Files) != 0 {
		t.Errorf("after a refused result: %s, exit %v, files %v; log:\n%s", r.Status, r.Result, r.Files, logs)
	}
}

// An SE made by the node for a task it no longer holds (its lease lapsed
// while it failed to fetch the inputs, say) is not posted: the server would
// take it as the result of a task another node now runs.
func TestNoSEForLostTask(t *testing.T) {
	g := newGrid(t)
	key := g.submit(`{"image": "x", "args": ["true"]}`, nil)
	logs := &syncBuffer{}
	f, j := takeByHand(t, g, logs)
	if keys, err := g.srv.Unassign(context.Background(), 0); err != nil || len(keys) != 1 {
		t.Fatalf("unassign: %v %v", keys, err)
	}
	if tasks, err := g.client("node2").Dequeue(context.Background(), client.DequeueRequest{Concurrency: 1}); err != nil || len(tasks) != 1 {
		t.Fatalf("node2's dequeue: %v %v", tasks, err)
	}
	f.post(j, f.systemError(j, errors.New("inputs unavailable")))
	if ti := g.task(key); ti.HasResult {
		t.Errorf("the lost task got the node's SE result; log:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "SE result not posted") {
		t.Errorf("log:\n%s", logs)
	}
}

// A task cancelled while it ran, whose node finished it before hearing of
// the cancel, gets no result: the post is refused as cancelled and the node
// drops the task quietly, with no SE posted in its stead.
func TestPostOfCancelledTaskDropped(t *testing.T) {
	g := newGrid(t)
	key := g.submit(`{"image": "x", "args": ["true"], "stdout": "out"}`, nil)
	logs := &syncBuffer{}
	f, j := takeByHand(t, g, logs)
	if _, err := g.client("alice").Cancel(context.Background(), key); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	f.post(j, okResult(t, j, "late\n", 0))
	if ti := g.task(key); ti.HasResult {
		t.Errorf("the cancelled task got a result; log:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "was cancelled before its result was posted") || strings.Contains(logs.String(), "SE result instead") {
		t.Errorf("the late result was not dropped quietly; log:\n%s", logs)
	}
	if len(f.heldKeys()) != 0 {
		t.Errorf("the node still holds %v", f.heldKeys())
	}
}
