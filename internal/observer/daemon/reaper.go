package daemon

import (
	"path"
	"time"
)

// The reaper closes abandoned sessions: those whose creator is gone (pid
// and start time, see proc) and that hold no process, in them or in
// sessions below them. Nobody can close those any more: a creator that
// died, a judge killed mid-run. It looks every ReapInterval and soon after
// every command (kickReaper), at most every minKick. It also forgets
// closed sessions older than KeepClosed, retries removing cgroups whose
// removal failed, and removes the parent folders made for sessions once
// they are empty (parents.go).

// minKick spaces out the looks that commands ask for.
const minKick = 100 * time.Millisecond

// kickReaper asks the reaper to look soon; it never blocks.
func (r *Registry) kickReaper() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// reaper is the registry's one background goroutine; Shutdown stops it.
func (r *Registry) reaper() {
	defer close(r.done)
	tick := time.NewTicker(r.o.ReapInterval)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
		case <-r.kick:
			if time.Since(last) < minKick {
				continue // the ticker comes soon enough
			}
		}
		last = time.Now()
		r.reap()
	}
}

// reap makes one pass: close the abandoned, forget the expired.
func (r *Registry) reap() {
	r.mu.Lock()
	var open []*session
	for _, s := range r.live {
		if !s.closing {
			open = append(open, s)
		}
	}
	pending := r.pending
	r.pending = nil
	r.mu.Unlock()
	// Outermost first: closing a session closes those below it.
	sortByDepth(open)
	for _, s := range open {
		if !r.abandoned(s) {
			continue
		}
		if !s.op.TryLock() {
			continue // a command is at it; next pass
		}
		r.mu.Lock()
		still := !s.closing && r.live[s.id] == s
		r.mu.Unlock()
		if still {
			_, _ = r.closeSession(s, "abandoned: its creator is gone and it holds no process")
		}
		s.op.Unlock()
	}
	for _, g := range pending {
		r.tree.Lock()
		err := g.Delete()
		r.tree.Unlock()
		if err != nil {
			r.mu.Lock()
			r.pending = append(r.pending, g)
			r.mu.Unlock()
		}
	}
	r.pruneClosed()
	r.pruneMade()
}

// abandoned reports whether s's creator is gone and s holds no process.
func (r *Registry) abandoned(s *session) bool {
	if s.creator.alive() {
		return false
	}
	populated, err := s.group.Populated()
	return err == nil && !populated
}

// pruneClosed forgets the closed sessions older than KeepClosed.
func (r *Registry) pruneClosed() {
	now := r.now()
	r.mu.Lock()
	old := r.closed.expire(now)
	r.mu.Unlock()
	for _, id := range old {
		r.forget(id)
	}
}

// sweep kills and removes every session cgroup below root that no open
// session is known at: what an observer that died left before it could
// record it (or after its record was lost). It descends into everything
// else, known sessions included.
func (r *Registry) sweep(root string) {
	var walk func(p string)
	walk = func(p string) {
		kids, err := r.cg.Children(p)
		if err != nil {
			r.log.Warn("sweeping session cgroups failed", "path", p, "error", err)
			return
		}
		for _, k := range kids {
			r.mu.Lock()
			known := r.byPath[k] != nil
			r.mu.Unlock()
			if !known && isSessionName(path.Base(k)) {
				g, err := r.cg.Load(k)
				if err == nil {
					err = g.Delete()
				}
				if err != nil {
					r.log.Warn("removing an unknown session cgroup failed", "path", k, "error", err)
				} else {
					r.log.Info("removed an unknown session cgroup", "path", k)
				}
				continue
			}
			walk(k)
		}
	}
	if root != "/" {
		if _, err := r.cg.Load(root); err != nil {
			return // nothing there
		}
	}
	walk(root)
}
