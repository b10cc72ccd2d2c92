package daemon

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// A session's life in the registry: made (create, for open and attach; or
// Adopt, for the worker's task cgroups), then closed (Close; or
// closeSession directly, by the reaper and by restore for sessions that
// finished while no daemon ran), its final stats kept (finish). What
// happens in between is commands.go.

// Open makes a new session in the caller's current cgroup; the caller stays
// outside it.
func (r *Registry) Open(caller int) (*observer.Session, error) { return r.create(caller, false) }

// AttachNew makes a new session in the caller's current cgroup and moves
// the caller into it.
func (r *Registry) AttachNew(caller int) (*observer.Session, error) { return r.create(caller, true) }

// create makes a session below the caller's cgroup. The lifecycle:
//
//  1. The caller's cgroup (on v1 its memory hierarchy's path, used in every
//     hierarchy) is where the session goes; a caller in a procsLeaf counts
//     as in the leaf's parent.
//  2. The enclosing sessions' cgroup_depth and cgroup_descendants limits
//     must allow one more session below them (checkNesting).
//  3. On v2 the processes of that cgroup move into its procsLeaf, so that
//     the new session can get controllers (prepareParent).
//  4. The session is recorded on disk, then its cgroup is made, without
//     limits, named kolejka_observer_<id>; with attach the caller moves in.
func (r *Registry) create(caller int, attach bool) (*observer.Session, error) {
	verb := "open"
	if attach {
		verb = "attach"
	}
	defer r.kickReaper()
	creator, err := procOf(caller)
	if err != nil {
		return nil, fmt.Errorf("unable to %s a session: caller %d: %v: %w", verb, caller, err, observer.ErrBadRequest)
	}
	parent, err := r.callerGroup(caller)
	if err != nil {
		return nil, fmt.Errorf("unable to %s a session: %w", verb, err)
	}
	id, secret := newID(), newSecret()
	now := r.now()
	s := &session{
		ident:   ident{id: id, hash: hashSecret(secret), path: path.Join(parent, groupPrefix+id), scope: parent, creator: creator},
		created: now,
	}
	r.tree.Lock()
	defer r.tree.Unlock()
	if err := r.checkNesting(parent); err != nil {
		return nil, fmt.Errorf("unable to %s a session: %w", verb, err)
	}
	if err := r.prepareParent(parent); err != nil {
		return nil, fmt.Errorf("unable to %s a session: %w", verb, err)
	}
	if err := r.save(s); err != nil {
		return nil, fmt.Errorf("unable to %s a session: %w", verb, err)
	}
	if missing, err := r.cg.MissingParents(s.path); err == nil {
		r.noteMade(missing)
	}
	g, err := r.cg.Create(s.path, nil)
	if err != nil {
		r.forget(s.id)
		return nil, fmt.Errorf("unable to %s a session: %w", verb, err)
	}
	s.group = g
	if attach {
		if err := g.Add(caller); err != nil {
			_ = g.Delete()
			r.forget(s.id)
			return nil, fmt.Errorf("unable to %s a session: %w", verb, err)
		}
		s.started = now
	}
	r.mu.Lock()
	if r.shut {
		r.mu.Unlock()
		if attach {
			// Out before the group goes: Delete kills what is inside.
			if home, err := r.home(parent); err == nil {
				_ = home.Add(caller)
			}
		}
		_ = g.Delete()
		r.forget(s.id)
		return nil, fmt.Errorf("unable to %s a session: %w", verb, observer.ErrClosed)
	}
	r.live[id] = s
	r.byPath[s.path] = s
	r.mu.Unlock()
	if attach {
		r.persist(s)
	}
	r.log.Info("session made", "session", id, "path", s.path, "creator", caller, "attached", attach)
	return &observer.Session{ID: id, Secret: secret, Path: s.path}, nil
}

// Adopt makes a session at exactly cgroup path p holding process pid, with
// limits l, for caller: the worker's extension, which makes a task's cgroup
// its top session so that judges inside can open sessions below it. The
// group is made if missing; if it exists and l sets none of memory, swap,
// pids and cpus, its limits are left as they are (otherwise they become
// exactly l's: pass the task's full limits). Its time limit counts from
// now. Its creator, for the abandoned-session rule, is the caller: the
// session outlives the task's processes until the worker has read its
// figures and closed it, and is reaped once empty if the worker dies. Only
// host root may act on it (the server allows /adopt to host root only;
// in-process callers are trusted).
func (r *Registry) Adopt(caller, pid int, p string, l spec.Limits) (*observer.Session, error) {
	verb := "adopt " + p
	defer r.kickReaper()
	p, err := r.adoptable(p)
	if err != nil {
		return nil, fmt.Errorf("unable to %s: %w", verb, err)
	}
	if err := CheckEnforceable(l); err != nil {
		return nil, fmt.Errorf("unable to %s: %w", verb, err)
	}
	if _, err := procOf(pid); err != nil {
		return nil, fmt.Errorf("unable to %s: process %d: %v: %w", verb, pid, err, observer.ErrBadRequest)
	}
	creator, err := procOf(caller)
	if err != nil {
		return nil, fmt.Errorf("unable to %s: caller %d: %v: %w", verb, caller, err, observer.ErrBadRequest)
	}
	id, secret := newID(), newSecret()
	now := r.now()
	s := &session{
		ident:   ident{id: id, hash: hashSecret(secret), path: p, scope: path.Dir(p), adopted: true, creator: creator},
		limits:  l.Clone(),
		created: now,
		started: now,
	}
	if l.Time != nil {
		s.limitsAt = now
	}
	r.tree.Lock()
	defer r.tree.Unlock()
	r.mu.Lock()
	_, taken := r.byPath[p]
	r.mu.Unlock()
	if taken {
		return nil, fmt.Errorf("unable to %s: it is a session already: %w", verb, observer.ErrBadRequest)
	}
	if err := r.checkNesting(path.Dir(p)); err != nil {
		return nil, fmt.Errorf("unable to %s: %w", verb, err)
	}
	if l.CPUs != nil {
		if s.cores, err = r.pickCoresBelow(s.scope, l); err != nil {
			return nil, fmt.Errorf("unable to %s: %w", verb, err)
		}
	}
	if err := r.save(s); err != nil {
		return nil, fmt.Errorf("unable to %s: %w", verb, err)
	}
	g, err := r.adoptGroup(p, pid, l, s.cores)
	if err != nil {
		r.forget(id)
		return nil, fmt.Errorf("unable to %s: %w", verb, err)
	}
	s.group = g
	r.mu.Lock()
	if r.shut {
		r.mu.Unlock()
		r.forget(id)
		return nil, fmt.Errorf("unable to %s: %w", verb, observer.ErrClosed)
	}
	r.live[id] = s
	r.byPath[p] = s
	r.armLocked(s)
	r.mu.Unlock()
	r.log.Info("session adopted", "session", id, "path", p, "pid", pid, "limits", l.String())
	return &observer.Session{ID: id, Secret: secret, Path: p}, nil
}

// adoptable checks the cgroup path that Adopt is given and returns it
// relative to the hierarchy the daemon sees: a clean absolute path below
// the root, none of the observer's procs leaves.
func (r *Registry) adoptable(p string) (string, error) {
	if p == "" || p[0] != '/' || path.Clean(p) != p || p == "/" {
		return "", fmt.Errorf("want a clean absolute cgroup path below /: %w", observer.ErrBadRequest)
	}
	// p is the hierarchy's own path; the daemon may see a sub-tree of it.
	p, err := r.cg.Relative(p)
	if err != nil || p == "/" {
		return "", fmt.Errorf("%v: %w", err, observer.ErrBadRequest)
	}
	if path.Base(p) == procsLeaf {
		return "", fmt.Errorf("%s is the observer's own: %w", procsLeaf, observer.ErrBadRequest)
	}
	return p, nil
}

// adoptGroup makes or limits the cgroup p of an adopted session, as Adopt
// says, and moves process pid in.
func (r *Registry) adoptGroup(p string, pid int, l spec.Limits, cores []int) (*cgroup.Group, error) {
	g, err := r.cg.Load(p)
	switch {
	case errors.Is(err, cgroup.ErrNotExist):
		g, err = r.cg.Create(p, resources(l, cores, r.noSwap))
	case err == nil && touchesGroup(l):
		err = g.Update(resources(l, cores, r.noSwap))
	}
	if err == nil {
		err = g.Add(pid)
	}
	return g, err
}

// Close ends the session and returns its final stats: a caller inside it
// (it asked; it is no leftover) moves back to the session's parent first,
// then everything left in the session and in the sessions below it is
// killed, they are measured one last time and their cgroups removed. Closing
// a closed session returns its final stats again.
func (r *Registry) Close(caller int, id, secret string) (spec.Stats, error) {
	verb := "close session " + id
	s, c, err := r.lookup(caller, id, secret, verb)
	if err != nil {
		return spec.Stats{}, err
	}
	if c != nil {
		return c.stats, nil
	}
	s.op.Lock()
	defer s.op.Unlock()
	if err := r.usable(s, verb); err != nil {
		if c := r.closedStats(id); c != nil {
			return c.stats, nil
		}
		return spec.Stats{}, err
	}
	if p, err := r.cg.PathOf(caller); err == nil && within(p, s.path) {
		if err := r.moveOut(caller, s, verb); err != nil {
			return spec.Stats{}, err
		}
	}
	return r.closeSession(s, "closed")
}

// closeSession ends s (whose op the caller holds) and the sessions below
// it: kill, measure, remove, keep the final stats.
func (r *Registry) closeSession(s *session, why string) (spec.Stats, error) {
	r.mu.Lock()
	if s.closing {
		r.mu.Unlock()
		return spec.Stats{}, fmt.Errorf("unable to close session %s: already closing: %w", s.id, observer.ErrNotFound)
	}
	s.closing = true
	s.disarmLocked()
	var below []*session
	for p, d := range r.byPath {
		if p != s.path && within(p, s.path) && !d.closing {
			d.closing = true
			d.disarmLocked()
			below = append(below, d)
		}
	}
	r.mu.Unlock()
	// Deepest first, so each is measured before its parent goes.
	sort.Slice(below, func(i, j int) bool { return len(below[i].path) > len(below[j].path) })
	killErr := s.group.Kill()
	at := r.now()
	for _, d := range below {
		st, _ := r.measure(d, at)
		r.finish(d, st, at)
		r.log.Info("session closed", "session", d.id, "why", "its parent session "+s.id+" closed")
	}
	st, err := r.measure(s, at)
	if err != nil {
		st = spec.Stats{CPUs: map[string]spec.CPUStats{}, GPUs: map[string]spec.GPUStats{}}
	}
	r.tree.Lock()
	delErr := s.group.Delete()
	r.tree.Unlock()
	if delErr != nil {
		r.mu.Lock()
		r.pending = append(r.pending, s.group)
		r.mu.Unlock()
		r.log.Warn("removing a closed session's cgroup failed; will retry", "session", s.id, "error", delErr)
	} else {
		r.pruneMade()
	}
	r.finish(s, st, at)
	r.log.Info("session closed", "session", s.id, "why", why, "kill_error", killErr)
	return st, nil
}

// finish moves s from the open sessions to the closed ones.
func (r *Registry) finish(s *session, st spec.Stats, at time.Time) {
	c := &closedSession{ident: s.ident, stats: st, closedAt: at}
	r.mu.Lock()
	delete(r.live, s.id)
	if r.byPath[s.path] == s {
		delete(r.byPath, s.path)
	}
	dropped := r.closed.add(c)
	r.mu.Unlock()
	r.persistClosed(c)
	for _, id := range dropped {
		r.forget(id)
	}
}
