package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/measure"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// Options configure a Registry. The zero value is a registry that keeps no
// state on disk and sweeps nothing: what `kolejka-observer run` uses
// in-process.
type Options struct {
	// StateDir keeps one file per session, so that a restarted observer
	// adopts the sessions of the one before it. "" keeps nothing.
	StateDir string
	// KeepClosed is how long the final stats of a closed session stay
	// readable; default 10 minutes. MaxClosed bounds how many are kept
	// (the oldest go first); default 10000.
	KeepClosed time.Duration
	MaxClosed  int
	// Sweep is a cgroup path ("/" for the whole host) below which, at
	// start, every session cgroup (kolejka_observer_<id>) that no state
	// record knows is killed and removed: leftovers of an observer that
	// died before it recorded them. Only the one observer of a host may
	// sweep; "" sweeps nothing.
	Sweep string
	// ReapInterval is how often abandoned sessions are looked for, besides
	// after each command; default 1 s.
	ReapInterval time.Duration
	// Logger receives what happens to sessions; default slog.Default().
	Logger *slog.Logger
	// Now is the clock (tests move it); default time.Now.
	Now func() time.Time
}

// Registry owns the sessions of one host: it makes their cgroups, moves
// processes in and out, applies limits, measures, freezes, kills and closes
// them. All of the observer's behaviour is here; the Server only speaks the
// wire protocol. Its methods are safe for concurrent use.
//
// caller is the pid of the process asking (the server takes it from the
// socket's peer credentials). Commands on a session need its secret, and the
// caller must be its creator, host root, or in a cgroup within the one the
// session was made in (see allowed).
type Registry struct {
	cg    *cgroup.Hierarchy
	o     Options
	log   *slog.Logger
	now   func() time.Time
	store *store // nil without StateDir
	// noSwap: the host accounts swap, so an absent swap limit next to a
	// memory limit can mean "no swap" (see resources).
	noSwap bool

	// tree serialises changes of the cgroup tree: making a session (and
	// evacuating its parent on v2), moving a process in or out, removing a
	// session's groups. They are quick; a session's Kill, which may take
	// long, runs outside it.
	tree sync.Mutex

	mu      sync.Mutex
	live    map[string]*session // by id
	byPath  map[string]*session // live sessions by cgroup path
	closed  map[string]*closedSession
	pending []*cgroup.Group // closed sessions' groups whose removal failed; retried
	made    map[string]bool // parent folders made for sessions, removed when empty (parents.go)
	shut    bool
	// timers counts time-limit callbacks running, so Shutdown can wait.
	timers sync.WaitGroup

	kick chan struct{} // wakes the reaper
	stop chan struct{}
	done chan struct{}
}

// NewRegistry returns the registry of cg's sessions. With a StateDir it
// first adopts the sessions recorded there (see restore), and with Sweep it
// removes unknown session cgroups; then it starts its reaper, which
// Shutdown stops.
func NewRegistry(cg *cgroup.Hierarchy, o Options) (*Registry, error) {
	if cg == nil {
		return nil, fmt.Errorf("unable to make an observer registry: no cgroup hierarchy: %w", observer.ErrBadRequest)
	}
	if o.KeepClosed <= 0 {
		o.KeepClosed = 10 * time.Minute
	}
	if o.MaxClosed <= 0 {
		o.MaxClosed = 10000
	}
	if o.ReapInterval <= 0 {
		o.ReapInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Registry{
		cg:     cg,
		o:      o,
		log:    o.Logger,
		now:    o.Now,
		live:   map[string]*session{},
		byPath: map[string]*session{},
		closed: map[string]*closedSession{},
		made:   map[string]bool{},
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	gib := int64(1 << 30)
	zero := int64(0)
	r.noSwap = cg.Check("/", &cgroup.Resources{Memory: &gib, Swap: &zero}) == nil
	if o.StateDir != "" {
		st, err := openStore(o.StateDir)
		if err != nil {
			return nil, err
		}
		r.store = st
		if err := r.restoreMade(); err != nil {
			return nil, err
		}
		if err := r.restore(); err != nil {
			return nil, err
		}
	}
	if o.Sweep != "" {
		r.sweep(o.Sweep)
	}
	go r.reaper()
	return r, nil
}

// Count returns the number of open sessions.
func (r *Registry) Count() int {
	r.kickReaper()
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

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

// callerGroup returns the cgroup a caller belongs to (see logicalGroup).
func (r *Registry) callerGroup(pid int) (string, error) {
	p, err := r.cg.PathOf(pid)
	if err != nil {
		return "", fmt.Errorf("caller %d: %v: %w", pid, err, observer.ErrBadRequest)
	}
	return logicalGroup(p), nil
}

// checkNesting refuses a new session in cgroup parent when an enclosing
// session's cgroup_depth or cgroup_descendants limit forbids it. Depth
// counts sessions, not cgroups: a session's own sub-sessions are at depth
// 1, theirs at 2. Descendants are the open sessions below it at any depth.
// It also refuses one inside a session that is closing.
func (r *Registry) checkNesting(parent string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shut {
		return observer.ErrClosed
	}
	var enclosing []*session // nearest first
	for p := parent; ; p = path.Dir(p) {
		if s := r.byPath[p]; s != nil {
			enclosing = append(enclosing, s)
		}
		if p == "/" {
			break
		}
	}
	for i, s := range enclosing {
		if s.closing {
			return fmt.Errorf("session %s is closing: %w", s.id, observer.ErrNotFound)
		}
		if s.expired {
			return fmt.Errorf("the time limit of session %s has passed: %w", s.id, observer.ErrNotFound)
		}
		if d := s.limits.CgroupDepth; d != nil && int64(i+1) > *d {
			return fmt.Errorf("session %s allows sessions only %d deep below it (cgroup_depth), this one would be %d deep: %w",
				s.id, *d, i+1, observer.ErrForbidden)
		}
		if n := s.limits.CgroupDescendants; n != nil {
			count := 0
			for p := range r.byPath {
				if p != s.path && within(p, s.path) {
					count++
				}
			}
			if int64(count+1) > *n {
				return fmt.Errorf("session %s allows %d sessions below it (cgroup_descendants) and has %d: %w",
					s.id, *n, count, observer.ErrForbidden)
			}
		}
	}
	return nil
}

// prepareParent makes cgroup parent ready to get a session below it. On v2
// its processes move into its procsLeaf (cgroup.Group.Evacuate): the kernel
// gives controllers, and so limits, memory.peak and pids.peak, only to the
// sub-groups of a group without processes of its own. The root group may
// hold processes and controllers at once, and v1 has no such rule.
func (r *Registry) prepareParent(parent string) error {
	if r.cg.Mode() != cgroup.Unified || parent == "/" {
		return nil
	}
	g, err := r.cg.Load(parent)
	if err != nil {
		return err
	}
	_, err = g.Evacuate(procsLeaf)
	return err
}

// home returns where a process that returns to cgroup p goes: p itself, or
// on v2 its procsLeaf (p has sessions below it, so its processes live in
// the leaf).
func (r *Registry) home(p string) (*cgroup.Group, error) {
	g, err := r.cg.Load(p)
	if err != nil || r.cg.Mode() != cgroup.Unified || p == "/" {
		return g, err
	}
	return g.Evacuate(procsLeaf)
}

// sessionHome returns where a process attaching to s goes: s's cgroup, or
// on v2 its procsLeaf once sessions were made below it.
func (r *Registry) sessionHome(s *session) *cgroup.Group {
	if r.cg.Mode() == cgroup.Unified {
		if leaf, err := r.cg.Load(path.Join(s.path, procsLeaf)); err == nil {
			return leaf
		}
	}
	return s.group
}

// lookup finds the session id for caller, open or closed, checking its
// secret and whether the caller may act on it. Every failure is the same
// ErrForbidden, so an id cannot be probed.
func (r *Registry) lookup(caller int, id, secret, verb string) (*session, *closedSession, error) {
	r.kickReaper()
	if id == "" {
		return nil, nil, fmt.Errorf("unable to %s: session_id is missing: %w", verb, observer.ErrBadRequest)
	}
	r.mu.Lock()
	if r.shut {
		r.mu.Unlock()
		return nil, nil, fmt.Errorf("unable to %s: %w", verb, observer.ErrClosed)
	}
	s := r.live[id]
	c := r.closed[id]
	if c != nil && r.now().Sub(c.closedAt) > r.o.KeepClosed {
		c = nil // expired; the reaper removes it
	}
	r.mu.Unlock()
	var who *ident
	switch {
	case s != nil:
		who = &s.ident
	case c != nil:
		who = &c.ident
	}
	if who == nil || !who.matches(secret) || !r.allowed(caller, who) {
		return nil, nil, fmt.Errorf("unable to %s: no session %q with this secret for process %d: %w", verb, id, caller, observer.ErrForbidden)
	}
	return s, c, nil
}

// allowed reports whether caller may act on the session who (its secret
// already checked). Kolejka checks nothing but the secret; we also require
// that the caller is the session's creator, or in a cgroup within the one
// the session was made in (its container, say), or host root. So a process
// of another container that learnt an id and secret still gets nothing. A
// session made by /adopt answers host root only: the task inside it must
// not lift its own limits.
func (r *Registry) allowed(caller int, who *ident) bool {
	if !who.adopted {
		if who.creator.Pid == caller && who.creator.alive() {
			return true
		}
		if p, err := r.callerGroup(caller); err == nil && within(p, who.scope) {
			return true
		}
	}
	return hostRoot(caller, -1)
}

// usable checks that the session lookup answered is still open: a command
// that waited for its op lock may find it closed meanwhile (ErrNotFound).
func (r *Registry) usable(s *session, verb string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.closing || r.live[s.id] != s {
		return fmt.Errorf("unable to %s: session %s is closed: %w", verb, s.id, observer.ErrNotFound)
	}
	return nil
}

// acquire finds the open session id for a command on it (see lookup) and
// takes its op lock, which the caller releases. A session that is closed,
// or closes while the command waits for the lock, is ErrNotFound.
func (r *Registry) acquire(caller int, id, secret, verb string) (*session, error) {
	s, c, err := r.lookup(caller, id, secret, verb)
	if err != nil {
		return nil, err
	}
	if c != nil {
		return nil, fmt.Errorf("unable to %s: it is closed: %w", verb, observer.ErrNotFound)
	}
	s.op.Lock()
	if err := r.usable(s, verb); err != nil {
		s.op.Unlock()
		return nil, err
	}
	return s, nil
}

// Attach moves the caller into the open session id.
func (r *Registry) Attach(caller int, id, secret string) error {
	verb := "attach to session " + id
	s, err := r.acquire(caller, id, secret, verb)
	if err != nil {
		return err
	}
	defer s.op.Unlock()
	r.mu.Lock()
	expired := s.expired
	r.mu.Unlock()
	if expired {
		return fmt.Errorf("unable to %s: its time limit has passed: %w", verb, observer.ErrNotFound)
	}
	r.tree.Lock()
	err = r.sessionHome(s).Add(caller)
	r.tree.Unlock()
	if err != nil {
		return fmt.Errorf("unable to %s: %w", verb, err)
	}
	r.mu.Lock()
	first := s.started.IsZero()
	if first {
		s.started = r.now()
		r.armLocked(s)
	}
	r.mu.Unlock()
	if first {
		r.persist(s)
	}
	return nil
}

// Detach moves the caller, which must be in the session (or below it), back
// to the cgroup the session was made in (on v2 that cgroup's procsLeaf).
func (r *Registry) Detach(caller int, id, secret string) error {
	verb := "detach from session " + id
	s, err := r.acquire(caller, id, secret, verb)
	if err != nil {
		return err
	}
	defer s.op.Unlock()
	return r.moveOut(caller, s, verb)
}

// moveOut moves caller from inside s back to s's parent cgroup.
func (r *Registry) moveOut(caller int, s *session, verb string) error {
	p, err := r.cg.PathOf(caller)
	if err != nil {
		return fmt.Errorf("unable to %s: caller %d: %v: %w", verb, caller, err, observer.ErrBadRequest)
	}
	if !within(p, s.path) {
		return fmt.Errorf("unable to %s: process %d is not in it (it is in %s): %w", verb, caller, p, observer.ErrBadRequest)
	}
	r.tree.Lock()
	defer r.tree.Unlock()
	dst, err := r.home(s.scope)
	if err == nil {
		err = dst.Add(caller)
	}
	if err != nil {
		return fmt.Errorf("unable to %s: %w", verb, err)
	}
	return nil
}

// SetLimits applies limits to the session: those l sets replace the
// session's, the others stay (see limits.go for each limit).
func (r *Registry) SetLimits(caller int, id, secret string, l spec.Limits) error {
	verb := "set the limits of session " + id
	s, c, err := r.lookup(caller, id, secret, verb)
	if err != nil {
		return err
	}
	if c != nil {
		return fmt.Errorf("unable to %s: it is closed: %w", verb, observer.ErrNotFound)
	}
	if err := CheckEnforceable(l); err != nil {
		return fmt.Errorf("unable to %s: %w", verb, err)
	}
	s.op.Lock()
	defer s.op.Unlock()
	if err := r.usable(s, verb); err != nil {
		return err
	}
	r.mu.Lock()
	merged := overlay(s.limits, l)
	cores := s.cores
	r.mu.Unlock()
	if l.CPUs != nil || l.CPUsOffset != nil {
		cores = nil
		if merged.CPUs != nil {
			if cores, err = r.pickCores(s.scope, merged); err != nil {
				return fmt.Errorf("unable to %s: %w", verb, err)
			}
		}
	}
	if touchesGroup(l) {
		if err := s.group.Update(resources(merged, cores, r.noSwap)); err != nil {
			return fmt.Errorf("unable to %s: %w", verb, err)
		}
	}
	r.mu.Lock()
	s.limits = merged
	s.cores = cores
	if l.Time != nil {
		s.limitsAt = r.now()
		r.armLocked(s)
	}
	r.mu.Unlock()
	r.persist(s)
	r.log.Info("session limited", "session", id, "limits", merged.String())
	return nil
}

// touchesGroup reports whether a limits change needs the cgroup updated.
func touchesGroup(l spec.Limits) bool {
	return l.Memory != nil || l.Swap != nil || l.Pids != nil || l.CPUs != nil || l.CPUsOffset != nil
}

// pickCores chooses the cores of a session made in cgroup scope with
// limits l, from those scope may use.
func (r *Registry) pickCores(scope string, l spec.Limits) ([]int, error) {
	g, err := r.cg.Load(scope)
	if err != nil {
		return nil, err
	}
	avail, err := g.EffectiveCPUs()
	if err != nil {
		return nil, err
	}
	var off int64
	if l.CPUsOffset != nil {
		off = *l.CPUsOffset
	}
	return pickCores(avail, *l.CPUs, off)
}

// Stats measures the session now, or returns its final stats if it closed
// less than KeepClosed ago. (**FIX**: Kolejka answers stats of any session
// without its secret.)
func (r *Registry) Stats(caller int, id, secret string) (spec.Stats, error) {
	verb := "read the stats of session " + id
	s, c, err := r.lookup(caller, id, secret, verb)
	if err != nil {
		return spec.Stats{}, err
	}
	if c != nil {
		return c.stats, nil
	}
	st, err := r.measure(s, r.now())
	if err != nil {
		if c := r.closedStats(id); c != nil {
			return c.stats, nil // it closed meanwhile
		}
		return spec.Stats{}, fmt.Errorf("unable to %s: %w", verb, err)
	}
	return st, nil
}

func (r *Registry) closedStats(id string) *closedSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed[id]
}

// measure reads the session's usage as Kolejka's stats, with its wall time
// from its start (first process in, or creation) until at.
func (r *Registry) measure(s *session, at time.Time) (spec.Stats, error) {
	u, err := s.group.Usage()
	if err != nil {
		return spec.Stats{}, err
	}
	r.mu.Lock()
	cores := s.cores
	start := s.started
	if start.IsZero() {
		start = s.created
	}
	r.mu.Unlock()
	if cores == nil {
		cores, _ = s.group.EffectiveCPUs() // nil where there is no cpuset: every core counted
	}
	st := measure.StatsOf(u, cores)
	st.Time = measure.Duration(max(at.Sub(start), 0))
	return st, nil
}

// Freeze stops every process of the session (and of the sessions below it)
// until Thaw.
func (r *Registry) Freeze(caller int, id, secret string) error {
	return r.groupOp(caller, id, secret, "freeze", (*cgroup.Group).Freeze)
}

// Thaw resumes what Freeze stopped.
func (r *Registry) Thaw(caller int, id, secret string) error {
	return r.groupOp(caller, id, secret, "thaw", (*cgroup.Group).Thaw)
}

// Kill kills every process of the session and of the sessions below it; the
// sessions stay open, empty.
func (r *Registry) Kill(caller int, id, secret string) error {
	return r.groupOp(caller, id, secret, "kill", (*cgroup.Group).Kill)
}

func (r *Registry) groupOp(caller int, id, secret, verb string, op func(*cgroup.Group) error) error {
	verb += " session " + id
	s, err := r.acquire(caller, id, secret, verb)
	if err != nil {
		return err
	}
	defer s.op.Unlock()
	if err := op(s.group); err != nil {
		return fmt.Errorf("unable to %s: %w", verb, err)
	}
	return nil
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
	r.closed[s.id] = c
	var evicted []string
	for len(r.closed) > r.o.MaxClosed {
		oldest := ""
		for id, c := range r.closed {
			if oldest == "" || c.closedAt.Before(r.closed[oldest].closedAt) {
				oldest = id
			}
		}
		delete(r.closed, oldest)
		evicted = append(evicted, oldest)
	}
	r.mu.Unlock()
	r.persistClosed(c)
	for _, id := range evicted {
		r.forget(id)
	}
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
	if p == "" || p[0] != '/' || path.Clean(p) != p || p == "/" {
		return nil, fmt.Errorf("unable to %s: want a clean absolute cgroup path below /: %w", verb, observer.ErrBadRequest)
	}
	// p is the hierarchy's own path; the daemon may see a sub-tree of it.
	p, err := r.cg.Relative(p)
	if err != nil || p == "/" {
		return nil, fmt.Errorf("unable to %s: %v: %w", verb, err, observer.ErrBadRequest)
	}
	if path.Base(p) == procsLeaf {
		return nil, fmt.Errorf("unable to %s: %s is the observer's own: %w", verb, procsLeaf, observer.ErrBadRequest)
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
		scope := s.scope
		for {
			if _, err := r.cg.Load(scope); err == nil || scope == "/" {
				break
			}
			scope = path.Dir(scope)
		}
		if s.cores, err = r.pickCores(scope, l); err != nil {
			return nil, fmt.Errorf("unable to %s: %w", verb, err)
		}
	}
	if err := r.save(s); err != nil {
		return nil, fmt.Errorf("unable to %s: %w", verb, err)
	}
	g, err := r.cg.Load(p)
	switch {
	case errors.Is(err, cgroup.ErrNotExist):
		g, err = r.cg.Create(p, resources(l, s.cores, r.noSwap))
	case err == nil && touchesGroup(l):
		err = g.Update(resources(l, s.cores, r.noSwap))
	}
	if err == nil {
		err = g.Add(pid)
	}
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

// Shutdown stops the registry's timers and reaper and returns once they
// have stopped, or when ctx ends. The sessions stay as they are, recorded
// in the state folder: the next observer adopts them. Commands after
// Shutdown fail with ErrClosed.
func (r *Registry) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	if r.shut {
		r.mu.Unlock()
		return nil
	}
	r.shut = true
	for _, s := range r.live {
		s.disarmLocked()
	}
	r.mu.Unlock()
	close(r.stop)
	finished := make(chan struct{})
	go func() {
		<-r.done
		r.timers.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("unable to shut the observer registry down: %w", ctx.Err())
	}
}
