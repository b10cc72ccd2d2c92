package foreman

import "github.com/kolejka-go/kolejka/worker"

// Warmer is an Executor that can keep containers prepared ahead of the
// tasks of the shapes (image, network, workspace and storage sizes) it has
// seen: *worker.Worker, with a runtime that can (runc). A task that finds
// one of its shape ready starts without waiting for its container's
// creation; each container serves one task and is destroyed after it.
type Warmer interface {
	// SetWarm sets how many containers of each shape are kept ready.
	SetWarm(n int)
	// Close destroys the containers no task took and prepares no more.
	Close() error
}

var _ Warmer = (*worker.Worker)(nil)

// DefaultWarm is kolejka-foreman's warm setting when none is given: one
// container per task shape seen. The worker makes them only while none of
// its tasks runs (a preparation costs about a cold start's CPU, and made
// beside a running task it took that task's core: the grid's spinner task,
// which must get a quarter of its core on a node pinned to one, failed when
// preparations ran beside it; made beside a result being posted it delayed
// the owner's answer), so a busy node runs cold and an idle one starts its
// next task warm.
const DefaultWarm = 1

// startWarm has the executor keep Config.Warm containers of each shape
// prepared, if it can and the node wants it.
func (f *Foreman) startWarm() {
	if w, ok := f.cfg.Executor.(Warmer); ok && f.cfg.Warm > 0 {
		w.SetWarm(f.cfg.Warm)
	}
}

// stopWarm destroys the prepared containers once no task will come.
func (f *Foreman) stopWarm() {
	if w, ok := f.cfg.Executor.(Warmer); ok && f.cfg.Warm > 0 {
		if err := w.Close(); err != nil {
			f.log.Warn("destroying the prepared containers failed", "error", err)
		}
	}
}
