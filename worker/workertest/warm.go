package workertest

import (
	"testing"
	"time"

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
	conformance(t, name, e, true)
}
