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

// DefaultWarm is kolejka-foreman's warm setting when none is given: off.
// The worker's conformance suite passes through prepared containers, but on
// a loaded node pinned to one core the preparation of the next container
// takes CPU from the task running beside it (the grid's spinner task,
// which must get a quarter of its core, failed with warm = 2 and passed
// with warm = 0 in the same conditions): a node turns it on knowing that
// (`warm = 2` suits a node with two slots).
const DefaultWarm = 0

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
