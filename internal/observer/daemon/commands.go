package daemon

import (
	"fmt"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/observer"
	"github.com/kolejka-go/kolejka/spec"
)

// The commands on an open session, each by a caller that lookup allowed
// (auth.go) and under the session's op lock: moving the caller in and out,
// limiting, freezing, thawing and killing. Measuring is stats.go.

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
