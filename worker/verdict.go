package worker

import (
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/measure"
	"github.com/kolejka-go/kolejka/spec"
)

// outcome is what the worker observed of a run, beyond the cgroup's counters.
type outcome struct {
	exit          ExitStatus
	started       bool          // the task's command was released
	wall          time.Duration // from release to the end of its last process
	timedOut      bool          // the time limit killed it
	outputLimit   bool          // a captured stream passed its cap
	workspaceFull bool          // the workspace or writable layer ran out of space
	outputsTooBig bool          // outputs past what the task could write were left out (see gather)
	systemError   error         // the system failed to run it
}

// verdict decides the status. One run can hit several limits (a fork bomb
// also runs out of time); the order says which cause a judge should see:
// the system's failure first, then the limit that forced the end (output,
// memory, pids), then time, then the command's own exit.
func verdict(o *outcome, u *cgroup.Usage) spec.Status {
	switch {
	case o.systemError != nil:
		return spec.StatusSE
	case o.outputLimit || o.workspaceFull || o.outputsTooBig:
		return spec.StatusOLE
	case u != nil && u.OOMKills > 0:
		return spec.StatusMLE
	case u != nil && u.PidsFailures > 0:
		return spec.StatusPLE
	case o.timedOut:
		return spec.StatusTLE
	case o.exit.Code != 0:
		return spec.StatusRE
	}
	return spec.StatusOK
}

// statsOf turns the task cgroup's counters into Kolejka's stats, with the
// observer's conversion, so that a task's figures are the same whether a
// daemon holds its session or not. cores are the cores the task could use.
func statsOf(u *cgroup.Usage, o *outcome, cores []int) spec.Stats {
	st := measure.StatsOf(u, cores)
	if o.started {
		wall := o.wall.Round(time.Microsecond)
		st.Time = &wall
	}
	return st
}

// result is the run's result file: runErr, the run's failure if any, makes
// it SE (unless the outcome names a system error already).
func (r *run) result(runErr error) *spec.Result {
	res := &spec.Result{
		ID:     r.task.ID,
		Tags:   append([]string{}, r.w.cfg.Tags...),
		Stdout: r.task.Stdout,
		Stderr: r.task.Stderr,
		Files:  map[string]spec.File{},
		Limits: r.limits,
		Stats:  statsOf(r.usage, &r.out, r.cores),
	}
	if r.out.systemError == nil && runErr != nil {
		r.out.systemError = runErr
	}
	res.Status = verdict(&r.out, r.usage)
	if r.out.started {
		code := r.out.exit.Code
		res.Result = &code
	}
	for _, f := range r.files {
		res.Files[f] = spec.File{Path: f}
	}
	res.Omitted = r.omitted
	return res
}
