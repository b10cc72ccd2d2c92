package daemon

import (
	"fmt"

	"github.com/kolejka-go/kolejka/observer"
)

// Who may act on a session: the one who knows its secret, and is its
// creator, in the cgroup it was made in, or host root (see allowed).

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
	c := r.closed.get(id, r.now())
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
