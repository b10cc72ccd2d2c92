package foreman

// This file owns the node's books: what it offers, what its running tasks
// hold, and so what the next dequeue may ask for.

import (
	"errors"
	"fmt"

	"github.com/kolejka-go/kolejka/spec"
)

// errWait: a task cannot start now but will once running tasks end.
var errWait = errors.New("waits for running tasks")

// grant is what a started task holds until it ends.
type grant struct {
	limits    spec.Limits // the limits it runs with here (spec.Fit)
	cores     []int       // the cores it is pinned to
	exclusive bool
}

// ledger is the node's accounting, guarded by the foreman's lock:
//
//   - free is the capacity less the consumables (cpus, memory, swap, pids,
//     storage, workspace, gpus) of every running task (spec.Consume, given
//     back with spec.Release); per-task maxima (time, image, …) stay;
//   - cores are handed out disjointly, one allocator call per task, and
//     free.CPUs always equals the number of free cores;
//   - at most slots tasks run at once;
//   - an exclusive task runs alone: it starts only on an idle node, and
//     nothing starts (or is asked for) while it runs.
type ledger struct {
	capacity  spec.Limits
	defaults  spec.Limits
	free      spec.Limits
	cores     *Cores
	slots     int
	running   int
	exclusive bool
}

func newLedger(capacity, defaults spec.Limits, cores []int, slots int) *ledger {
	return &ledger{
		capacity: capacity.Clone(),
		defaults: defaults.Clone(),
		free:     capacity.Clone(),
		cores:    NewCores(cores),
		slots:    max(slots, 1),
	}
}

// request is what a dequeue may ask for now: the free resources and how
// many tasks; ok is false when the node must take nothing (all slots busy,
// an exclusive task runs, or what is free can hold no task at all).
func (l *ledger) request() (free spec.Limits, n int, ok bool) {
	if l.exclusive || l.running >= l.slots || l.exhausted() {
		return spec.Limits{}, 0, false
	}
	return l.free.Clone(), l.slots - l.running, true
}

// exhausted: no core, memory or process is left free, where the node
// counts them; every task needs at least one of each. A dequeue then would
// wait out its whole long poll for a task that cannot fit, while the task
// that frees room ends meanwhile: a node with more slots than cores, its
// cores all busy, would take new work once per long poll (BusyWait)
// instead of as soon as a task ends (notify wakes nextRequest).
func (l *ledger) exhausted() bool {
	name, _ := noRoom(l.free)
	return name != ""
}

// noRoom names the first of cores, memory and processes that l counts and
// has none of (with its value), or returns "": every task needs at least
// one of each.
func noRoom(l spec.Limits) (name string, v int64) {
	for _, c := range []struct {
		name string
		v    *int64
	}{{"cpus", l.CPUs}, {"memory", l.Memory}, {"pids", l.Pids}} {
		if c.v != nil && *c.v <= 0 {
			return c.name, *c.v
		}
	}
	return "", 0
}

// admit reserves what t needs and returns the grant, errWait when it must
// wait for running tasks to end, or an error wrapping ErrNoFit when it
// could not run here even on an idle node (a server that ignored what the
// node declared).
func (l *ledger) admit(t *spec.Task) (grant, error) {
	exclusive := t.Exclusive != nil && *t.Exclusive
	if _, ok := spec.Fit(t.Limits, l.capacity, l.defaults); !ok {
		return grant{}, fmt.Errorf("task asks for %s, the node offers %s: %w", t.Limits, l.capacity, ErrNoFit)
	}
	if l.exclusive || l.running >= l.slots || (exclusive && l.running > 0) {
		return grant{}, errWait
	}
	eff, ok := spec.Fit(t.Limits, l.free, l.defaults)
	if !ok {
		return grant{}, errWait
	}
	// The node pins tasks to explicit cores (worker.Options.Cores), so the
	// offsets of Kolejka's rule mean nothing here.
	eff.CPUsOffset, eff.GPUsOffset = nil, nil
	g := grant{limits: eff, exclusive: exclusive}
	if eff.CPUs != nil {
		if *eff.CPUs < 1 {
			return grant{}, fmt.Errorf("limits.cpus is %d, a task needs at least one core: %w", *eff.CPUs, ErrNoFit)
		}
		cores, err := l.cores.Take(int(*eff.CPUs))
		if err != nil {
			return grant{}, errWait // free.CPUs said yes: cannot happen, but never over-commit
		}
		g.cores = cores
	}
	l.free.Consume(eff)
	l.running++
	l.exclusive = exclusive
	return g, nil
}

// release gives back what admit reserved.
func (l *ledger) release(g grant) {
	l.free.Release(g.limits)
	l.cores.Put(g.cores)
	l.running--
	if g.exclusive {
		l.exclusive = false
	}
}
