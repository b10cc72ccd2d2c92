package foreman

// This file owns the dequeue loop: asking the server for as much work as
// the node can take, and starting what it hands out.

import (
	"context"
	"errors"
	"reflect"
	"time"

	"github.com/kolejka-go/kolejka/client"
	"github.com/kolejka-go/kolejka/spec"
)

// requestSlack is how much longer than its wait a dequeue may take before
// it is given up (a server that stopped answering without closing).
const requestSlack = 30 * time.Second

// dequeueLoop asks for tasks while the node can take some, until the
// foreman stops.
func (f *Foreman) dequeueLoop() {
	bo := f.cfg.Retry.backoff()
	failing := false
	for {
		free, n, busy, ok := f.nextRequest()
		if !ok {
			return
		}
		longPoll := f.cl.Settings().Has("long_poll")
		var wait time.Duration
		if longPoll {
			wait = f.cfg.Wait
			if busy {
				wait = f.cfg.BusyWait
			}
		}
		ctx, cancel := context.WithTimeout(f.loopCtx, wait+requestSlack)
		asked := time.Now()
		var got client.Dequeued
		err := f.retryLogin(ctx, func(ctx context.Context) error {
			var err error
			got, err = f.cl.DequeueTasks(ctx, client.DequeueRequest{
				Concurrency: n,
				Free:        free,
				Tags:        f.cfg.Tags,
				Defaults:    f.cfg.Defaults,
				Wait:        wait,
				Heartbeat:   true,
				RoomWake:    true,
				Queues:      f.cfg.Queues,
				Capacity:    f.cfg.Capacity,
			})
			return err
		})
		cancel()
		if f.loopCtx.Err() != nil {
			// Stopping. A dequeue cut short may (in a window of microseconds
			// on the server) have assigned tasks whose answer never came:
			// their leases lapse and they are requeued.
			f.admit(got)
			return
		}
		if err != nil {
			if !failing {
				f.log.Warn("unable to take tasks; retrying", "error", err)
			} else {
				f.log.Debug("unable to take tasks; retrying", "error", err)
			}
			failing = true
			f.pause(bo.delay(), false)
			continue
		}
		if failing {
			f.log.Info("taking tasks again")
			failing = false
		}
		bo.reset()
		if len(got.Tasks) == 0 {
			switch {
			case !longPoll:
				f.pause(f.cfg.Interval, true)
			case time.Since(asked) < wait/2:
				// A long poll answered early with nothing: a result this
				// node posted ended it (its task's room is free, or will be
				// once the container is torn down), or the server is
				// shutting down. Ask again once the room differs from
				// what this poll asked with; do not spin meanwhile.
				f.awaitRoom(free, n, min(f.cfg.Interval, time.Second))
			}
			continue
		}
		f.admit(got)
	}
}

// retryLogin calls fn, signing in again once if the server forgot the
// session.
func (f *Foreman) retryLogin(ctx context.Context, fn func(context.Context) error) error {
	err := fn(ctx)
	if errors.Is(err, client.ErrForbidden) && f.cfg.Login != nil && ctx.Err() == nil {
		if f.relogin(ctx) == nil {
			err = fn(ctx)
		}
	}
	return err
}

// nextRequest waits until the node can take a task and returns what it
// has free, how many tasks it takes and whether it holds any; ok is false
// once the foreman stops.
func (f *Foreman) nextRequest() (free spec.Limits, n int, busy, ok bool) {
	for {
		f.mu.Lock()
		if f.stopping {
			f.mu.Unlock()
			return spec.Limits{}, 0, false, false
		}
		if len(f.pending) == 0 {
			if free, n, ok := f.ledger.request(); ok {
				// Busy while the node holds any task, running or posting:
				// the server does not hand an exclusive task to a node
				// holding one, and a post does not wake a long poll, so the
				// node asks again soon rather than at the end of a long wait.
				busy := len(f.jobs) > 0
				f.mu.Unlock()
				return free, n, busy, true
			}
		}
		f.mu.Unlock()
		select {
		case <-f.wake:
		case <-f.loopCtx.Done():
		}
	}
}

// awaitRoom waits at most d until the node's room differs from the free
// limits and task count a dequeue asked with. A task's end frees its room
// after its result is posted (the container is torn down meanwhile), and
// the wake-up may be stale: so the room itself is compared.
func (f *Foreman) awaitRoom(free spec.Limits, n int, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		f.mu.Lock()
		now, m, ok := f.ledger.request()
		stopping := f.stopping
		f.mu.Unlock()
		// Not ok: nextRequest waits for the room instead.
		if stopping || !ok || m != n || !reflect.DeepEqual(now, free) {
			return
		}
		select {
		case <-f.wake:
		case <-t.C:
			return
		case <-f.loopCtx.Done():
			return
		}
	}
}

// pause sleeps d, or less if the foreman stops or (with early) the node's
// state changes.
func (f *Foreman) pause(d time.Duration, early bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	var wake chan struct{}
	if early {
		wake = f.wake
	}
	select {
	case <-t.C:
	case <-wake:
	case <-f.loopCtx.Done():
	}
}

// admit takes in tasks the server handed out, in order, and starts what
// can start.
func (f *Foreman) admit(d client.Dequeued) {
	if len(d.Tasks) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range d.Tasks {
		if t.ID == "" {
			f.log.Error("the server handed out a task without a key; ignored")
			continue
		}
		// The same task again while its lost run winds down is a new
		// assignment: the old run is dropped without a trace (drop checks
		// that the map still names it).
		if old, dup := f.jobs[t.ID]; dup && !errors.Is(context.Cause(old.ctx), ErrLost) {
			f.log.Error("the server handed out a task the node holds; ignored", "task", t.ID)
			continue
		}
		j := f.newJob(t)
		j.env = f.passedEnv(d.PassEnv[t.ID])
		f.jobs[t.ID] = j
		f.pending = append(f.pending, j)
		j.log.Info("task taken", "image", t.Image, "limits", t.Limits.String(), "exclusive", t.Exclusive != nil && *t.Exclusive)
	}
	f.schedule()
}

// schedule starts waiting tasks in order while the ledger admits them; the
// first that must wait blocks the ones behind it (so that an exclusive or
// large task is not starved by small ones). Called with f.mu held.
func (f *Foreman) schedule() {
	for len(f.pending) > 0 && !f.stopping {
		j := f.pending[0]
		g, err := f.ledger.admit(j.task)
		if errors.Is(err, errWait) {
			return
		}
		f.pending = f.pending[1:]
		j.grant = g
		f.jobsWG.Add(1)
		go f.runJob(j, err)
	}
}
