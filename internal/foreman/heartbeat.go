package foreman

// This file owns heartbeats: keeping the leases of every task the node
// holds (extension "heartbeat"), and acting on the tasks the server says
// the node lost.

import (
	"context"
	"slices"
	"time"
)

// heartbeats extends the node's leases every lease_time/3 until ctx ends.
// A failed heartbeat is retried at the next tick: leases last three
// periods, so one lost request costs nothing, and a server that is down
// for longer has the last word when it is back (it requeues what lapsed
// and says so in the next answer).
func (f *Foreman) heartbeats(ctx context.Context) {
	if !f.cl.Settings().Has("heartbeat") {
		return
	}
	t := time.NewTicker(f.heartbeat)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		keys := f.heldKeys()
		if len(keys) == 0 {
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, f.heartbeat)
		var lost []string
		err := f.retryLogin(hctx, func(ctx context.Context) error {
			var err error
			_, lost, err = f.cl.Heartbeat(ctx, keys)
			return err
		})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				f.log.Warn("heartbeat failed; retrying", "tasks", len(keys), "error", err)
			}
			failing = true
			continue
		}
		if failing {
			f.log.Info("heartbeats answered again")
			failing = false
		}
		for _, k := range lost {
			f.lose(k)
		}
	}
}

// heldKeys lists every task the node holds, sorted.
func (f *Foreman) heldKeys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.jobs))
	for k := range f.jobs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// lose acts on a task the server took back: one waiting to start is
// forgotten, a running one killed (its goroutine then drops it without
// posting). One that has run and is being posted carries on: the server
// accepts its result only if no other came first.
func (f *Foreman) lose(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[key]
	if !ok {
		return // finished meanwhile
	}
	for i, p := range f.pending {
		if p == j {
			f.pending = slices.Delete(f.pending, i, i+1)
			delete(f.jobs, key)
			j.log.Warn("task lost before it started: the server took it back")
			f.schedule()
			f.notify()
			return
		}
	}
	j.cancel(ErrLost)
}
