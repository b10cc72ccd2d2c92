package worker

import (
	"log/slog"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
)

const (
	// initGrace is how long kolejka-init has, once the task's group is
	// empty, to report the task's end before its container is killed.
	// Init reports at once when it reaps the task; only a wedged init
	// (stopped, or killed from inside where it could be) takes longer.
	initGrace = 2 * time.Second
	// initPoll is how often the task's group is looked at meanwhile.
	initPoll = 50 * time.Millisecond
)

// watchInit keeps a run from waiting for kolejka-init forever. The worker
// learns of the task's end from init (its report on the gate, or its own
// end); a task cannot reach init (init is not dumpable: no ptrace, no
// /proc/1/mem), but the worker does not rely on that. Once the task's
// group holds no process (the task ended, or the time limit or an
// interrupt killed it) and init has said nothing for initGrace, the
// container is killed, so that the run ends, its time limit holds and the
// worker answers its signals whatever became of init. It returns true if it
// had to kill, false once init reported or the container ended.
func watchInit(group *cgroup.Group, ended, exited <-chan struct{}, kill func() error, log *slog.Logger) bool {
	tick := time.NewTicker(initPoll)
	defer tick.Stop()
	var emptySince time.Time
	for {
		select {
		case <-ended:
			return false
		case <-exited:
			return false
		case now := <-tick.C:
			populated, err := group.Populated()
			if err != nil || populated {
				emptySince = time.Time{}
				continue
			}
			if emptySince.IsZero() {
				emptySince = now
				continue
			}
			if now.Sub(emptySince) < initGrace {
				continue
			}
			log.Warn("kolejka-init did not report the end of the task within the grace period: killing its container", "grace", initGrace)
			if err := kill(); err != nil {
				log.Warn("killing the container failed", "error", err)
			}
			return true
		}
	}
}
