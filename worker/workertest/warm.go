package workertest

import (
	"context"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/tasktest"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
)

// NewWarmEnv is NewEnv with a worker that keeps warm containers of each
// shape seen prepared (worker.Config.Warm), destroying those idle for idle.
func NewWarmEnv(t testing.TB, rt worker.Runtime, warm int, idle time.Duration) *Env {
	t.Helper()
	e := NewEnv(t, rt)
	e.W = e.newWorkerWith(t, rt, "none", func(c *worker.Config) { c.Warm, c.WarmIdle = warm, idle })
	t.Cleanup(func() { _ = e.W.Close() })
	return e
}

// ConformanceWarm is Conformance through prepared containers: before each
// example task a container of its shape is prepared (worker.Prepare), and
// the task must run in it (a warm hit), with the verdicts and outputs of a
// cold run and nothing left after it. rt must be a worker.Preparer.
func ConformanceWarm(t *testing.T, name string, rt worker.Runtime) {
	e := NewEnv(t, rt)
	t.Cleanup(func() { _ = e.W.Close() })
	cases, err := tasktest.Cases()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if !c.AppliesTo(name) {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			task, err := spec.LoadTask(c.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.W.Prepare(context.Background(), e.W.TaskShape(task, worker.Options{})); err != nil {
				t.Fatalf("preparing a container: %v", err)
			}
			hits := e.W.WarmStats().Hits
			resultDir, res, err := e.Run(t, c.Dir, worker.Options{})
			if res == nil {
				t.Fatalf("no result: %v", err)
			}
			if err != nil {
				t.Errorf("system error: %v", err)
			}
			if now := e.W.WarmStats().Hits; now != hits+1 {
				t.Errorf("the task did not run in the prepared container (warm hits %d, then %d)", hits, now)
			}
			onDisk, lerr := spec.LoadResult(resultDir)
			if lerr != nil {
				t.Fatalf("reading the result back: %v", lerr)
			}
			for _, problem := range c.Check(resultDir, onDisk, OutputLimit) {
				t.Error(problem)
			}
			e.AssertClean(t)
		})
	}
}
